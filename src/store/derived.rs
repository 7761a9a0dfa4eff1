//! What the store derives from the decision log, kept in memory so that a decision reads
//! and updates it without touching the disk: rate counters (one-minute buckets per key) and
//! the earlier approvals of each fingerprint.
//!
//! A backend loads it at start from what it persisted, adds each recorded decision to it,
//! and persists what changed in batches off the answer's path ([`Derived::take_changes`]).
//! So a crash costs at most the changes of one persist interval — never a decision, which
//! is durable before its answer leaves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{FingerprintStats, RateKey};

/// The resolution of the rate buckets.
pub const MINUTE_MS: u64 = 60_000;

/// Rate buckets and fingerprint approvals, shared by every call.
#[derive(Default)]
pub struct Derived {
    rates: Mutex<RateTable>,
    fingerprints: Mutex<Fingerprints>,
}

/// What changed since the last [`Derived::take_changes`]: absolute values, so persisting
/// them twice is harmless.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// `(key, minute, count)`.
    pub rate_buckets: Vec<(RateKey, u64, u64)>,
    pub fingerprints: Vec<(String, FingerprintStats)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.rate_buckets.is_empty() && self.fingerprints.is_empty()
    }
}

impl Derived {
    /// Counts one registration on each of `keys` in `minute`; an approval also counts for
    /// its fingerprint (the first one is remembered as what later duplicates name).
    pub fn add(&self, keys: &[RateKey], minute: u64, approval: Option<(&str, u64, &str)>) {
        let mut rates = lock(&self.rates);
        for key in keys {
            rates.add(key, minute);
        }
        drop(rates);
        if let Some((fingerprint, at_ms, decision_id)) = approval {
            lock(&self.fingerprints).approve(fingerprint, at_ms, decision_id);
        }
    }

    /// For each key, the registrations counted within each window ending at `now_ms`: a
    /// sliding window over minute buckets, where the bucket the window starts in counts
    /// for the part of its minute inside the window, rounded up. A burst on either side of
    /// a minute boundary is counted together, never reset to zero by the clock.
    pub fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        now_ms: u64,
    ) -> Vec<Vec<u64>> {
        let rates = lock(&self.rates);
        keys.iter()
            .map(|key| rates.counts(key, windows, now_ms))
            .collect()
    }

    pub fn fingerprint_stats(&self, fingerprint: &str) -> Option<FingerprintStats> {
        lock(&self.fingerprints).stats.get(fingerprint).cloned()
    }

    /// Loads a persisted rate bucket (at start).
    pub fn load_rate_bucket(&self, key: RateKey, minute: u64, count: u64) {
        lock(&self.rates).load(key, minute, count);
    }

    /// Loads a persisted fingerprint record (at start).
    pub fn load_fingerprint(&self, fingerprint: String, stats: FingerprintStats) {
        lock(&self.fingerprints).stats.insert(fingerprint, stats);
    }

    /// What changed since the last call, to be persisted.
    pub fn take_changes(&self) -> Changes {
        let rate_buckets = lock(&self.rates).take_dirty();
        let mut fingerprints = lock(&self.fingerprints);
        let dirty = std::mem::take(&mut fingerprints.dirty);
        let fingerprints = dirty
            .into_iter()
            .filter_map(|print| {
                let stats = fingerprints.stats.get(&print)?.clone();
                Some((print, stats))
            })
            .collect();
        Changes {
            rate_buckets,
            fingerprints,
        }
    }

    /// Marks `changes` (taken but not persisted) as changed again.
    pub fn restore(&self, changes: Changes) {
        let mut rates = lock(&self.rates);
        for (key, minute, _) in changes.rate_buckets {
            let oldest = rates.dirty.entry(key).or_insert(minute);
            *oldest = (*oldest).min(minute);
        }
        drop(rates);
        let mut fingerprints = lock(&self.fingerprints);
        for (print, _) in changes.fingerprints {
            fingerprints.dirty.insert(print);
        }
    }

    /// Forgets rate buckets older than `oldest_minute` and fingerprints first seen before
    /// `fingerprints_before_ms`; returns how many of each.
    pub fn prune(&self, oldest_minute: u64, fingerprints_before_ms: u64) -> (u64, u64) {
        let buckets = lock(&self.rates).prune(oldest_minute);
        let mut fingerprints = lock(&self.fingerprints);
        let before = fingerprints.stats.len();
        fingerprints
            .stats
            .retain(|_, stats| stats.first_seen_ms >= fingerprints_before_ms);
        let prints = (before - fingerprints.stats.len()) as u64;
        (buckets, prints)
    }

    /// Keys with at least one bucket, and buckets in all (for tests and status).
    pub fn rate_table_size(&self) -> (usize, usize) {
        let rates = lock(&self.rates);
        let buckets = rates.keys.values().map(VecDeque::len).sum();
        (rates.keys.len(), buckets)
    }
}

/// The registrations counted within each window ending at `now_ms`, from one key's
/// `(minute, count)` buckets newest first: a sliding window over minute buckets, where the
/// bucket the window starts in counts for the part of its minute inside the window, rounded
/// up. Every backend counts this way.
pub fn window_counts(
    newest_first: impl Iterator<Item = (u64, u64)> + Clone,
    windows: &[Duration],
    now_ms: u64,
) -> Vec<u64> {
    let now_minute = now_ms / MINUTE_MS;
    windows
        .iter()
        .map(|window| {
            let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            let start_ms = now_ms.saturating_sub(window_ms);
            let first = start_ms / MINUTE_MS;
            // The part of the first minute that lies inside the window.
            let inside_first = (first + 1) * MINUTE_MS - start_ms;
            newest_first
                .clone()
                .skip_while(|(minute, _)| *minute > now_minute)
                .take_while(|(minute, _)| *minute >= first)
                .map(|(minute, count)| match minute == first {
                    true => count.saturating_mul(inside_first).div_ceil(MINUTE_MS),
                    false => count,
                })
                .sum()
        })
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One-minute buckets per key, oldest first.
#[derive(Default)]
struct RateTable {
    keys: HashMap<RateKey, VecDeque<(u64, u64)>>,
    /// Keys changed since the last persist, with the oldest minute changed.
    dirty: HashMap<RateKey, u64>,
}

impl RateTable {
    fn add(&mut self, key: &RateKey, minute: u64) {
        let buckets = match self.keys.get_mut(key) {
            Some(buckets) => buckets,
            None => self.keys.entry(key.clone()).or_default(),
        };
        add_to(buckets, minute, 1);
        match self.dirty.get_mut(key) {
            Some(oldest) => *oldest = (*oldest).min(minute),
            None => {
                self.dirty.insert(key.clone(), minute);
            }
        }
    }

    fn load(&mut self, key: RateKey, minute: u64, count: u64) {
        add_to(self.keys.entry(key).or_default(), minute, count);
    }

    fn counts(&self, key: &RateKey, windows: &[Duration], now_ms: u64) -> Vec<u64> {
        match self.keys.get(key) {
            Some(buckets) => window_counts(buckets.iter().rev().copied(), windows, now_ms),
            None => vec![0; windows.len()],
        }
    }

    fn take_dirty(&mut self) -> Vec<(RateKey, u64, u64)> {
        let mut changed = Vec::new();
        for (key, oldest) in self.dirty.drain() {
            if let Some(buckets) = self.keys.get(&key) {
                for &(minute, count) in buckets.iter().filter(|(minute, _)| *minute >= oldest) {
                    changed.push((key.clone(), minute, count));
                }
            }
        }
        changed
    }

    fn prune(&mut self, oldest_minute: u64) -> u64 {
        let mut removed = 0;
        self.keys.retain(|_, buckets| {
            while buckets
                .front()
                .is_some_and(|(minute, _)| *minute < oldest_minute)
            {
                buckets.pop_front();
                removed += 1;
            }
            !buckets.is_empty()
        });
        removed
    }
}

/// Adds `count` to the bucket of `minute`, keeping the buckets in order (a decision
/// recorded late lands in its own minute).
fn add_to(buckets: &mut VecDeque<(u64, u64)>, minute: u64, count: u64) {
    match buckets.back_mut() {
        Some((last, total)) if *last == minute => *total += count,
        Some((last, _)) if *last < minute => buckets.push_back((minute, count)),
        None => buckets.push_back((minute, count)),
        Some(_) => {
            let at = buckets.partition_point(|(m, _)| *m < minute);
            match buckets.get_mut(at) {
                Some((m, total)) if *m == minute => *total += count,
                _ => buckets.insert(at, (minute, count)),
            }
        }
    }
}

#[derive(Default)]
struct Fingerprints {
    stats: HashMap<String, FingerprintStats>,
    dirty: HashSet<String>,
}

impl Fingerprints {
    fn approve(&mut self, fingerprint: &str, at_ms: u64, decision_id: &str) {
        match self.stats.get_mut(fingerprint) {
            Some(stats) => stats.approved += 1,
            None => {
                self.stats.insert(
                    fingerprint.to_owned(),
                    FingerprintStats {
                        approved: 1,
                        first_seen_ms: at_ms,
                        first_decision_id: decision_id.to_owned(),
                    },
                );
            }
        }
        if !self.dirty.contains(fingerprint) {
            self.dirty.insert(fingerprint.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RateDimension;

    fn ip(value: &str) -> RateKey {
        RateKey {
            dimension: RateDimension::Ip,
            value: value.to_owned(),
        }
    }

    const WINDOWS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(3600)];

    #[test]
    fn a_window_slides_and_weighs_the_minute_it_starts_in() {
        let derived = Derived::default();
        for minute in [100, 100, 130, 159, 160] {
            derived.add(&[ip("a")], minute, None);
        }
        derived.add(&[ip("b")], 160, None);
        let end_of_160 = 161 * MINUTE_MS - 1;
        assert_eq!(
            derived.rate_counts(&[ip("a"), ip("b"), ip("c")], &WINDOWS, end_of_160),
            vec![vec![2, 4], vec![1, 1], vec![0, 0]],
            "a window reaching one millisecond into a minute counts its registrations, rounded up"
        );
        let middle_of_160 = 160 * MINUTE_MS + 30_000;
        assert_eq!(
            derived.rate_counts(&[ip("a")], &WINDOWS, middle_of_160),
            vec![vec![2, 4]],
            "half of minute 159 (one) and half of minute 100 (two) round up to one each"
        );
        // Half an hour later the registrations of minutes 100 and 130 have left the hour.
        assert_eq!(
            derived.rate_counts(&[ip("a")], &WINDOWS, 191 * MINUTE_MS),
            vec![vec![0, 2]]
        );
    }

    #[test]
    fn a_late_decision_lands_in_its_own_minute() {
        let derived = Derived::default();
        derived.add(&[ip("a")], 10, None);
        derived.add(&[ip("a")], 12, None);
        derived.add(&[ip("a")], 11, None);
        derived.add(&[ip("a")], 11, None);
        let changes = derived.take_changes();
        let mut buckets = changes.rate_buckets;
        buckets.sort_by_key(|(_, minute, _)| *minute);
        assert_eq!(
            buckets,
            vec![(ip("a"), 10, 1), (ip("a"), 11, 2), (ip("a"), 12, 1)]
        );
    }

    #[test]
    fn changes_are_handed_out_once_as_absolute_counts() {
        let derived = Derived::default();
        derived.load_rate_bucket(ip("a"), 5, 7);
        derived.add(&[ip("a")], 5, Some(("print", 1_000, "01D")));
        let changes = derived.take_changes();
        assert_eq!(changes.rate_buckets, vec![(ip("a"), 5, 8)]);
        assert_eq!(changes.fingerprints[0].1.approved, 1);
        assert!(derived.take_changes().is_empty());
        derived.add(&[], 6, Some(("print", 2_000, "01E")));
        let stats = derived.fingerprint_stats("print").expect("approved before");
        assert_eq!(
            (stats.approved, stats.first_decision_id.as_str()),
            (2, "01D")
        );
    }

    #[test]
    fn pruning_forgets_old_buckets_and_fingerprints() {
        let derived = Derived::default();
        derived.add(&[ip("a")], 1, Some(("old", 60_000, "01A")));
        derived.add(&[ip("a"), ip("b")], 5, Some(("new", 300_000, "01B")));
        assert_eq!(derived.prune(3, 100_000), (1, 1));
        assert_eq!(derived.rate_table_size(), (2, 2));
        assert!(derived.fingerprint_stats("old").is_none());
        assert!(derived.fingerprint_stats("new").is_some());
    }
}
