//! The decision log's list indexes, in memory: for each value of each field a listing can
//! filter on (tenant, caller IP, client_id, fingerprint), the ids of the decisions that have
//! it, oldest first.
//!
//! Built from the decision log when the store opens, kept by every recorded decision, and
//! trimmed by retention. Nothing of it is written: a crash costs nothing that the next open
//! does not rebuild, and a decision costs no index write (on sled 0.34 the four index trees
//! made a decision's writes 2.5 times as expensive, `examples/sled_floor.rs`).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ulid::Ulid;

/// A field a listing can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Tenant = 0,
    Ip = 1,
    ClientId = 2,
    Fingerprint = 3,
}

/// What one decision is listed under.
#[derive(Clone, Copy, Debug)]
pub(super) struct Listed<'a> {
    pub(super) id: Ulid,
    pub(super) tenant: &'a str,
    pub(super) ip: Option<&'a str>,
    pub(super) client_id: Option<&'a str>,
    pub(super) fingerprint: &'a str,
}

impl Listed<'_> {
    fn values(&self) -> [(Field, Option<&str>); 4] {
        [
            (Field::Tenant, Some(self.tenant)),
            (Field::Ip, self.ip),
            (Field::ClientId, self.client_id),
            (Field::Fingerprint, Some(self.fingerprint)),
        ]
    }
}

type Ids = HashMap<Box<str>, Vec<Ulid>>;

#[derive(Default)]
pub(super) struct Lists {
    fields: RwLock<[Ids; 4]>,
}

impl Lists {
    /// Lists a decision under each of its values. Ids arrive nearly in order (concurrent
    /// decisions are minted and written in slightly different orders); each list stays sorted.
    pub(super) fn add(&self, listed: &Listed<'_>) {
        let mut fields = self.write();
        for (field, value) in listed.values() {
            let Some(value) = value else { continue };
            let ids = &mut fields[field as usize];
            let ids = match ids.get_mut(value) {
                Some(ids) => ids,
                None => ids.entry(value.into()).or_default(),
            };
            match ids.last() {
                Some(last) if *last >= listed.id => {
                    let at = ids.partition_point(|id| *id < listed.id);
                    if ids.get(at) != Some(&listed.id) {
                        ids.insert(at, listed.id);
                    }
                }
                _ => ids.push(listed.id),
            }
        }
    }

    /// How many decisions have `value` in `field`: a listing walks the shortest list it can.
    pub(super) fn count(&self, field: Field, value: &str) -> usize {
        self.read()[field as usize].get(value).map_or(0, Vec::len)
    }

    /// The ids of the decisions with `value` in `field` minted in `lower..upper`, newest
    /// first, at most `limit` of them.
    pub(super) fn newest(
        &self,
        field: Field,
        value: &str,
        lower: Ulid,
        upper: Ulid,
        limit: usize,
    ) -> Vec<Ulid> {
        let fields = self.read();
        let Some(ids) = fields[field as usize].get(value) else {
            return Vec::new();
        };
        let from = ids.partition_point(|id| *id < lower);
        let to = ids.partition_point(|id| *id < upper);
        ids[from..to.max(from)]
            .iter()
            .rev()
            .take(limit)
            .copied()
            .collect()
    }

    /// Forgets the decisions minted before `cutoff` (retention deleted them). Returns how
    /// many list entries went.
    pub(super) fn prune_before(&self, cutoff: Ulid) -> usize {
        let mut removed = 0;
        for ids in self.write().iter_mut() {
            ids.retain(|_, ids| {
                let old = ids.partition_point(|id| *id < cutoff);
                removed += old;
                ids.drain(..old);
                if ids.capacity() > 2 * ids.len() + 16 {
                    ids.shrink_to_fit();
                }
                !ids.is_empty()
            });
        }
        removed
    }

    fn read(&self) -> RwLockReadGuard<'_, [Ids; 4]> {
        self.fields
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, [Ids; 4]> {
        self.fields
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, random: u128) -> Ulid {
        Ulid::from_parts(ms, random)
    }

    fn listed(id: Ulid, tenant: &str, ip: Option<&str>) -> Listed<'static> {
        Listed {
            id,
            tenant: tenant.to_owned().leak(),
            ip: ip.map(|ip| &*ip.to_owned().leak()),
            client_id: None,
            fingerprint: "fp",
        }
    }

    const ALL: (Ulid, Ulid) = (Ulid(0), Ulid(u128::MAX));

    #[test]
    fn a_listing_is_newest_first_even_when_decisions_were_written_out_of_order() {
        let lists = Lists::default();
        for ms in [10, 30, 20, 40, 25] {
            lists.add(&listed(id(ms, 0), "acme", None));
        }
        let newest = lists.newest(Field::Tenant, "acme", ALL.0, ALL.1, 10);
        let times: Vec<u64> = newest.iter().map(|id| id.timestamp_ms()).collect();
        assert_eq!(times, [40, 30, 25, 20, 10]);
    }

    #[test]
    fn the_same_decision_added_twice_is_listed_once() {
        let lists = Lists::default();
        lists.add(&listed(id(10, 1), "acme", None));
        lists.add(&listed(id(20, 1), "acme", None));
        lists.add(&listed(id(10, 1), "acme", None));
        assert_eq!(lists.count(Field::Tenant, "acme"), 2);
    }

    #[test]
    fn a_page_takes_the_time_range_and_the_limit() {
        let lists = Lists::default();
        for ms in 1..=100 {
            lists.add(&listed(id(ms, 0), "acme", Some("192.0.2.1")));
        }
        let page = lists.newest(
            Field::Ip,
            "192.0.2.1",
            Ulid::from_parts(20, 0),
            Ulid::from_parts(60, 0),
            5,
        );
        let times: Vec<u64> = page.iter().map(|id| id.timestamp_ms()).collect();
        assert_eq!(times, [59, 58, 57, 56, 55]);
        assert!(
            lists
                .newest(Field::Ip, "192.0.2.9", ALL.0, ALL.1, 5)
                .is_empty()
        );
        // An empty or inverted range is empty, not a panic.
        let inverted = lists.newest(
            Field::Ip,
            "192.0.2.1",
            Ulid::from_parts(60, 0),
            Ulid::from_parts(20, 0),
            5,
        );
        assert!(inverted.is_empty());
    }

    #[test]
    fn a_decision_without_an_ip_is_not_listed_under_any_ip() {
        let lists = Lists::default();
        lists.add(&listed(id(1, 0), "acme", None));
        assert_eq!(lists.count(Field::Ip, ""), 0);
        assert_eq!(lists.count(Field::Tenant, "acme"), 1);
        assert_eq!(lists.count(Field::Fingerprint, "fp"), 1);
    }

    #[test]
    fn retention_forgets_old_decisions_and_values_left_with_none() {
        let lists = Lists::default();
        lists.add(&listed(id(10, 0), "gone", Some("192.0.2.1")));
        lists.add(&listed(id(20, 0), "acme", Some("192.0.2.1")));
        lists.add(&listed(id(30, 0), "acme", Some("192.0.2.2")));
        // Each decision is listed under tenant, fingerprint and IP.
        assert_eq!(lists.prune_before(Ulid::from_parts(25, 0)), 6);
        assert_eq!(lists.count(Field::Tenant, "gone"), 0);
        assert_eq!(lists.count(Field::Ip, "192.0.2.1"), 0);
        assert_eq!(lists.count(Field::Tenant, "acme"), 1);
        assert_eq!(lists.read()[Field::Tenant as usize].len(), 1);
    }
}
