//! Failed console sign-ins, counted per source so that nobody can guess an operator token
//! at the speed of the listener. A source is the caller's IP address (an IPv6 caller's /64:
//! one host commonly holds the whole prefix), or the Unix socket. After [`MAX_FAILURES`]
//! refused credentials within [`WINDOW`] a source is refused without a check until the
//! window of its first failure ends. The table holds at most [`MAX_SOURCES`]; when it is
//! full of live entries, every new source shares one overflow entry, so that many
//! addresses together still meet the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refused credentials a source may present within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_SOURCES: usize = 10_000;

/// Who signs in, as far as the throttle is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address, or the first 64 bits of an IPv6 one.
    Address(u128),
    /// A caller on the admin Unix socket (no address).
    LocalSocket,
    /// Every source beyond a full table.
    Overflow,
}

impl Source {
    pub fn of(ip: Option<IpAddr>) -> Source {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Source::Address(u128::from(u32::from(v4))),
            Some(IpAddr::V6(v6)) => Source::Address(u128::from(v6) & !u128::from(u64::MAX)),
            None => Source::LocalSocket,
        }
    }
}

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Source, (Instant, u32)>>,
}

impl Throttle {
    /// `Err(wait)`: `source` has failed too often; it may try again after `wait`.
    pub fn check(&self, source: Source, now: Instant) -> Result<(), Duration> {
        let failures = self.lock();
        let source = Self::bucket(&failures, source);
        match failures.get(&source) {
            Some(&(since, count)) if count >= MAX_FAILURES && now < since + WINDOW => {
                Err(since + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts one refused credential of `source`.
    pub fn failed(&self, source: Source, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MAX_SOURCES && !failures.contains_key(&source) {
            failures.retain(|_, (since, _)| now < *since + WINDOW);
        }
        let source = Self::bucket(&failures, source);
        let entry = failures.entry(source).or_insert((now, 0));
        if now >= entry.0 + WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// A successful sign-in forgets the source's failures.
    pub fn succeeded(&self, source: Source) {
        self.lock().remove(&source);
    }

    /// The entry `source` counts on: its own, or the overflow entry when the table is full.
    fn bucket(failures: &HashMap<Source, (Instant, u32)>, source: Source) -> Source {
        match failures.len() >= MAX_SOURCES && !failures.contains_key(&source) {
            true => Source::Overflow,
            false => source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, (Instant, u32)>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Source {
        Source::of(Some(text.parse().unwrap()))
    }

    #[test]
    fn a_source_is_refused_after_five_failures_until_its_window_ends() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for n in 0..MAX_FAILURES {
            assert_eq!(throttle.check(ip("192.0.2.7"), start), Ok(()), "try {n}");
            throttle.failed(ip("192.0.2.7"), start);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.check(ip("192.0.2.7"), later),
            Err(Duration::from_secs(40))
        );
        assert_eq!(
            throttle.check(ip("192.0.2.8"), later),
            Ok(()),
            "another address is not held back"
        );
        assert_eq!(throttle.check(ip("192.0.2.7"), start + WINDOW), Ok(()));
        throttle.failed(ip("192.0.2.7"), start + WINDOW);
        assert_eq!(
            throttle.check(ip("192.0.2.7"), start + WINDOW),
            Ok(()),
            "a new window counts from zero"
        );
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.failed(Source::LocalSocket, now);
        }
        throttle.succeeded(Source::LocalSocket);
        throttle.failed(Source::LocalSocket, now);
        assert_eq!(throttle.check(Source::LocalSocket, now), Ok(()));
    }

    #[test]
    fn an_ipv6_host_cannot_rotate_addresses_within_its_prefix() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..MAX_FAILURES {
            throttle.failed(ip(&format!("2001:db8:1:2::{n:x}")), now);
        }
        assert!(throttle.check(ip("2001:db8:1:2:ffff::1"), now).is_err());
        assert_eq!(throttle.check(ip("2001:db8:1:3::1"), now), Ok(()));
        assert_eq!(
            ip("::ffff:192.0.2.7"),
            ip("192.0.2.7"),
            "an IPv4-mapped address is its IPv4 address"
        );
    }

    #[test]
    fn many_addresses_beyond_a_full_table_share_one_limit() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for n in 0..MAX_SOURCES as u32 {
            throttle.failed(Source::Address(u128::from(n)), now);
        }
        for n in 0..MAX_FAILURES {
            let source = Source::Address(u128::from(1_000_000 + n));
            assert_eq!(throttle.check(source, now), Ok(()));
            throttle.failed(source, now);
        }
        assert!(
            throttle.check(Source::Address(2_000_000), now).is_err(),
            "a fresh address beyond the table meets the overflow entry's limit"
        );
        let later = now + WINDOW;
        throttle.failed(Source::Address(3_000_000), later);
        assert_eq!(
            throttle.lock().len(),
            1,
            "once their windows end, the entries make room again"
        );
        assert_eq!(throttle.check(Source::Overflow, later), Ok(()));
    }
}
