//! `cimd::cache::freshness` on arbitrary headers. The input is split on `\n` into
//! Cache-Control, Expires, Date and Age (a missing line is an absent header). Asserts no
//! panic, and that a `For` lifetime lies within the bounds, and that a `no-store`
//! directive always wins.
#![no_main]

use std::time::{Duration, SystemTime};

use clientgate::cimd::cache::{CacheBounds, Freshness, freshness};
use clientgate::cimd::fetch::ResponseHeaders;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n').map(str::to_owned);
    let headers = ResponseHeaders {
        cache_control: lines.next(),
        expires: lines.next(),
        date: lines.next(),
        age: lines.next(),
        ..ResponseHeaders::default()
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let no_store = headers
        .cache_control
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"));
    for bounds in [
        CacheBounds::default(),
        CacheBounds {
            min: Duration::ZERO,
            max: Duration::MAX,
        },
        CacheBounds {
            min: Duration::from_secs(60),
            max: Duration::from_secs(60),
        },
    ] {
        match freshness(&headers, now, bounds) {
            Freshness::For(lifetime) => {
                assert!(!no_store, "no-store ignored: {headers:?}");
                assert!(
                    bounds.min <= lifetime && lifetime <= bounds.max,
                    "{lifetime:?} outside {bounds:?}"
                );
            }
            Freshness::NoStore => {}
            Freshness::Revalidate => assert!(!no_store, "no-store read as no-cache"),
        }
    }
});
