//! `check_client_id` on arbitrary UTF-8 under every profile, with `allow_loopback` off and
//! on. When a URL comes back:
//! - `url.as_str()` is the raw client_id byte for byte (rule 9, F-5);
//! - it is https with a host, and has no user name, password or fragment;
//! - its host is not `localhost` (nor `*.localhost`) unless loopback is allowed;
//! - an IP-literal host is not special-use (unless it is loopback and loopback is
//!   allowed), and `AddressRules::url_refusal` has nothing against it;
//! - no finding is an error, and the findings stay bounded.
//!
//! Found on its first run (fixed since): `https://[::ffff:8f00:1]/c`, an IPv4-mapped
//! literal of a public address, was accepted.
#![no_main]

use std::net::IpAddr;

use clientgate::address::{AddressRules, is_loopback, special_use};
use clientgate::cimd::client_id::check_client_id;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for profile in common::PROFILES {
        for allow_loopback in [false, true] {
            let rules = AddressRules {
                allow_loopback,
                deny: Vec::new(),
            };
            let check = check_client_id(raw, profile, &rules);
            common::assert_bounded(&check.findings);
            let Some(url) = check.url else {
                continue;
            };
            let context = format!("{raw:?} under {profile:?}, allow_loopback {allow_loopback}");
            assert_eq!(url.as_str(), raw, "not byte for byte: {context}");
            assert!(
                !check.findings.iter().any(|f| f.is_error()),
                "URL returned with an error finding: {context}"
            );
            assert_eq!(url.scheme(), "https", "{context}");
            assert!(url.username().is_empty() && url.password().is_none(), "{context}");
            assert!(url.fragment().is_none(), "{context}");
            assert!(rules.url_refusal(&url).is_none(), "{context}");
            let ip = match url.host() {
                None => panic!("no host: {context}"),
                Some(url::Host::Domain(name)) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    if !allow_loopback {
                        assert!(
                            name != "localhost" && !name.ends_with(".localhost"),
                            "localhost accepted: {context}"
                        );
                    }
                    None
                }
                Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            };
            if let Some(ip) = ip {
                if let Some(range) = special_use(ip) {
                    assert!(
                        allow_loopback && is_loopback(ip),
                        "special-use {ip} ({range}) accepted: {context}"
                    );
                }
            }
        }
    }
});
