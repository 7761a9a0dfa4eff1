//! One generation of the sled store: a complete sled database and the code that reads and
//! writes its trees.
//!
//! Trees: `decisions` (ULID → JSON record); `step_up_tickets` (ticket id → JSON); `rates`
//! (`<dimension><value> 0x00 <minute>` → count); `fingerprints` (fingerprint → earlier
//! approvals); `cimd_cache` (client_id → JSON); `shadow_disagreements` (decision ULID →
//! JSON); `admin_audit` (action ULID → JSON); `approved_documents`; `meta`
//! (`format_version`). A decision is one insert (with its ticket, one transaction over two
//! trees); its rate buckets and fingerprint record are written later in batches from the
//! store's in-memory state, and its list index entries are only in memory
//! ([`super::lists`]), rebuilt from `decisions` at open.
//!
//! `write.rs` writes (only through a [`write::Writer`], made from the live generation's
//! guard), `read.rs` reads, `prune.rs` deletes what retention no longer keeps.

mod prune;
mod read;
mod write;

pub(super) use write::Writer;

use std::path::Path;

use ulid::Ulid;

use super::lists::{Field, Listed, Lists};
use crate::store::derived::Derived;
use crate::store::group_commit::GroupCommit;
use crate::store::paging::PageBudget;
use crate::store::{
    DecisionQuery, DecisionRecord, FingerprintStats, RateDimension, RateKey, StoreError,
};

/// The layout version this build reads and writes. Versions 1 and 2 (with the index trees
/// `by_tenant`, `by_ip`, `by_client` and `by_fingerprint` and, in 2, the index watermark) are
/// opened in place: the index trees and the watermark are dropped and the store is marked 3.
pub const FORMAT_VERSION: &str = "3";
const UPGRADABLE_FORMATS: &[&str] = &["1", "2"];
const FORMAT_KEY: &[u8] = b"format_version";
/// What formats 1 and 2 kept that format 3 does not: the on-disk list indexes and the `meta`
/// key of their watermark.
const DROPPED_TREES: [&str; 4] = ["by_tenant", "by_ip", "by_client", "by_fingerprint"];
const DROPPED_META: &[u8] = b"indexed_through_ms";
/// sled's page cache. Its default (1 GiB) let a store of 100,000 decisions hold 1.4 GB
/// resident (`examples/store_footprint.rs`); decisions are read rarely (listings), so a
/// small cache costs little.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Index entries examined per page at most; a page that hits it ends early with a token.
const SCAN_LIMIT: usize = 10_000;
pub(super) struct Generation {
    pub(super) db: sled::Db,
    decisions: sled::Tree,
    tickets: sled::Tree,
    rates: sled::Tree,
    fingerprints: sled::Tree,
    cimd_cache: sled::Tree,
    disagreements: sled::Tree,
    admin_audit: sled::Tree,
    /// Tenant and CIMD client_id → the watched members of the document last approved.
    approved_documents: sled::Tree,
    meta: sled::Tree,
    pub(super) commit: GroupCommit,
}

/// The key of a tenant's approved document: tenant and client_id joined by a NUL, which
/// neither can hold (a client_id is a URL; a tenant name is checked at the edge).
pub(in crate::store::sled_store) fn approved_document_key(
    tenant: &str,
    client_id: &str,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + client_id.len() + 1);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.extend_from_slice(client_id.as_bytes());
    key
}

impl Generation {
    /// Opens (or creates) the generation in `dir`. Must run inside a tokio runtime, which
    /// hosts the group-commit flusher.
    pub(super) fn open(dir: &Path) -> Result<Generation, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|error| open_error(dir, error))?;
        Generation::with_db(db, dir)
    }

    /// A generation over the open database `db` at `dir`.
    pub(super) fn with_db(db: sled::Db, dir: &Path) -> Result<Generation, StoreError> {
        let path = dir.display().to_string();
        let tree = |name: &str| db.open_tree(name).map_err(|error| open_error(dir, error));
        let store = Generation {
            decisions: tree("decisions")?,
            tickets: tree("step_up_tickets")?,
            rates: tree("rates")?,
            fingerprints: tree("fingerprints")?,
            cimd_cache: tree("cimd_cache")?,
            disagreements: tree("shadow_disagreements")?,
            admin_audit: tree("admin_audit")?,
            approved_documents: tree("approved_documents")?,
            meta: tree("meta")?,
            commit: GroupCommit::start(db.clone(), dir)?,
            db,
        };
        store.check_format(&path)?;
        Ok(store)
    }

    /// A new store gets the current format version; an existing one must have it.
    fn check_format(&self, path: &str) -> Result<(), StoreError> {
        let meta = &self.meta;
        match meta.get(FORMAT_KEY)? {
            Some(found) if found.as_ref() == FORMAT_VERSION.as_bytes() => Ok(()),
            Some(found)
                if UPGRADABLE_FORMATS
                    .iter()
                    .any(|old| found.as_ref() == old.as_bytes()) =>
            {
                for tree in DROPPED_TREES {
                    self.db.drop_tree(tree)?;
                }
                meta.remove(DROPPED_META)?;
                meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            Some(found) => Err(StoreError::UnknownFormat {
                path: path.to_owned(),
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: FORMAT_VERSION.to_owned(),
            }),
            None if self.decisions.is_empty() && self.tickets.is_empty() => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION.as_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            None => Err(StoreError::UnknownFormat {
                path: path.to_owned(),
                found: "none".to_owned(),
                expected: FORMAT_VERSION.to_owned(),
            }),
        }
    }
}

impl Generation {
    /// Lists every decision of the log in `lists` (the list indexes are only in memory).
    /// Returns how many were listed.
    pub(super) fn rebuild_lists(&self, lists: &Lists) -> Result<u64, StoreError> {
        /// The members of a record that it is listed under; the rest is skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Members<'a> {
            #[serde(borrow)]
            tenant: std::borrow::Cow<'a, str>,
            #[serde(borrow, default)]
            ip: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow, default)]
            client_id: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            fingerprint: std::borrow::Cow<'a, str>,
        }
        let mut listed = 0;
        for entry in self.decisions.iter() {
            let (key, value) = entry?;
            match serde_json::from_slice::<Members<'_>>(&value) {
                Ok(members) => {
                    lists.add(&Listed {
                        id: id_of_key(&key),
                        tenant: &members.tenant,
                        ip: members.ip.as_deref(),
                        client_id: members.client_id.as_deref(),
                        fingerprint: &members.fingerprint,
                    });
                    listed += 1;
                }
                Err(error) => prune::corrupt("decisions", &key, &error),
            }
        }
        Ok(listed)
    }

    /// Loads the persisted derived state into `derived`; a fingerprint record that does not
    /// decode is rebuilt from the decision log (`lists` must be complete).
    pub(super) fn load_derived(&self, derived: &Derived, lists: &Lists) -> Result<(), StoreError> {
        for entry in self.rates.iter() {
            let (key, count) = entry?;
            if let Some((rate_key, minute)) = parse_rate_bucket_key(&key) {
                derived.load_rate_bucket(rate_key, minute, decode_count(&count));
            }
        }
        for entry in self.fingerprints.iter() {
            let (key, value) = entry?;
            let print = String::from_utf8_lossy(&key).into_owned();
            match serde_json::from_slice::<FingerprintStats>(&value) {
                Ok(stats) => derived.load_fingerprint(print, stats),
                // Never reset: that would forget the earlier approvals `duplicate_of` names.
                // The decision log has them.
                Err(error) => {
                    prune::corrupt("fingerprints", &key, &error);
                    if let Some(stats) = self.fingerprint_from_log(&print, lists)? {
                        tracing::warn!(fingerprint = %print, approved = stats.approved, "rebuilt a fingerprint record from the decision log");
                        derived.load_fingerprint(print, stats);
                    }
                }
            }
        }
        Ok(())
    }

    /// The approvals of `fingerprint` as the decision log has them.
    fn fingerprint_from_log(
        &self,
        fingerprint: &str,
        lists: &Lists,
    ) -> Result<Option<FingerprintStats>, StoreError> {
        let mut stats: Option<FingerprintStats> = None;
        let newest_first = lists.newest(
            Field::Fingerprint,
            fingerprint,
            Ulid(0),
            Ulid(u128::MAX),
            usize::MAX,
        );
        for id in newest_first.into_iter().rev() {
            let Some(record) = self.read_decision(id)? else {
                continue;
            };
            if record.decision != crate::vocab::Decision::Approve {
                continue;
            }
            match &mut stats {
                Some(stats) => stats.approved += 1,
                None => {
                    stats = Some(FingerprintStats {
                        approved: 1,
                        first_seen_ms: record.decided_at_ms,
                        first_decision_id: record.decision_id,
                    })
                }
            }
        }
        Ok(stats)
    }

    /// One decision by its ULID.
    fn read_decision(&self, id: Ulid) -> Result<Option<DecisionRecord>, StoreError> {
        Ok(self.read_decision_sized(id)?.map(|(record, _)| record))
    }

    /// A decision and the bytes it takes in the store.
    fn read_decision_sized(&self, id: Ulid) -> Result<Option<(DecisionRecord, usize)>, StoreError> {
        let Some(bytes) = self.decisions.get(id.to_bytes())? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt {
            key: id.to_string(),
            message: error.to_string(),
        })?;
        Ok(Some((record, bytes.len())))
    }
}

fn open_error(dir: &Path, error: sled::Error) -> StoreError {
    if let sled::Error::Io(io) = &error
        && crate::store::no_space(io.kind())
    {
        return StoreError::DiskFull(format!("cannot open `{}`: {error}", dir.display()));
    }
    StoreError::Open {
        path: dir.display().to_string(),
        message: match &error {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                "another process has it open (one clientgate per data directory)".to_owned()
            }
            other => other.to_string(),
        },
    }
}

/// The stored JSON of `value`, a `what` (named in the error if it cannot be encoded).
fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Encode {
        what,
        message: error.to_string(),
    })
}

/// Reads and decodes one JSON value; `name` names the key in a corruption error.
fn read_json<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    name: impl FnOnce() -> String,
) -> Result<Option<T>, StoreError> {
    let Some(bytes) = tree.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| StoreError::Corrupt {
            key: name(),
            message: error.to_string(),
        })
}

fn matches(query: &DecisionQuery, record: &DecisionRecord) -> bool {
    let equal = |filter: &Option<String>, value: Option<&str>| {
        filter.as_deref().is_none_or(|filter| Some(filter) == value)
    };
    equal(&query.tenant, Some(&record.tenant))
        && equal(&query.client_id, record.client_id.as_deref())
        && equal(&query.ip, record.ip.as_deref())
        && equal(&query.fingerprint, Some(&record.fingerprint))
        && query
            .decision
            .is_none_or(|decision| decision == record.decision)
        && query
            .registration_type
            .is_none_or(|kind| kind == record.registration_type)
}

pub(super) fn parse_id(text: &str) -> Result<Ulid, StoreError> {
    Ulid::from_string(text).map_err(|error| StoreError::Corrupt {
        key: text.to_owned(),
        message: format!("not a ULID: {error}"),
    })
}

/// `<dimension tag> <value> 0x00 <minute, 8 bytes big-endian>`.
fn rate_bucket_key(key: &RateKey, minute: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(key.value.len() + 10);
    bytes.push(key.dimension.tag());
    bytes.extend_from_slice(key.value.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&minute.to_be_bytes());
    bytes
}

/// The key and minute of a `rates` tree key.
fn parse_rate_bucket_key(bytes: &[u8]) -> Option<(RateKey, u64)> {
    let (&tag, rest) = bytes.split_first()?;
    let dimension = RateDimension::ALL.into_iter().find(|d| d.tag() == tag)?;
    let (value, minute) = rest.split_at_checked(rest.len().checked_sub(9)?)?;
    let (&0, minute) = minute.split_first()? else {
        return None;
    };
    Some((
        RateKey {
            dimension,
            value: String::from_utf8(value.to_vec()).ok()?,
        },
        u64::from_be_bytes(minute.try_into().ok()?),
    ))
}

fn decode_count(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The ULID of a key of `decisions`, `shadow_disagreements` or `admin_audit`.
fn id_of_key(key: &[u8]) -> Ulid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&key[key.len() - 16..]);
    Ulid::from_bytes(bytes)
}
