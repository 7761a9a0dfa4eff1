//! `address::special_use` and `AddressRules::refusal`. The first 16 bytes are an IPv6
//! address, the next 4 an IPv4 address (missing bytes are zero). Asserts:
//! - a special-use IPv4 address stays special-use in every IPv6 form that embeds it:
//!   IPv4-mapped `::ffff:a.b.c.d`, SIIT `::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
//!   NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::` (with the fuzzed low 80 bits too);
//! - the ranges `std` knows (private, loopback, link-local, multicast, broadcast,
//!   documentation, unspecified, unique local, IPv6 link-local) are special-use;
//! - `refusal` with no deny list refuses exactly the special-use set (the address as
//!   written: `::ffff:0:0/96` is special-use whatever it embeds), and with
//!   `allow_loopback` exactly that set less loopback.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clientgate::address::{AddressRules, is_loopback, special_use};
use libfuzzer_sys::fuzz_target;

fn check_rules(ip: IpAddr) {
    // The special-use set judges the address as written: an IPv4-mapped address is in
    // `::ffff:0:0/96` whatever it embeds, so it is refused even when its IPv4 is public.
    let special = special_use(ip).is_some();
    let strict = AddressRules::default();
    assert_eq!(strict.refusal(ip).is_some(), special, "refusal({ip})");
    let loopback_ok = AddressRules {
        allow_loopback: true,
        deny: Vec::new(),
    };
    assert_eq!(
        loopback_ok.refusal(ip).is_some(),
        special && !is_loopback(ip),
        "refusal({ip}) with allow_loopback"
    );
    // The IPv4-mapped form of a special-use IPv4 address is refused too.
    if let IpAddr::V4(v4) = ip
        && special_use(ip).is_some()
    {
        assert!(strict.refusal(IpAddr::V6(v4.to_ipv6_mapped())).is_some(), "mapped {v4}");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = [0u8; 20];
    let n = data.len().min(20);
    bytes[..n].copy_from_slice(&data[..n]);
    let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).unwrap());
    let v4 = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
    let [a, b, c, d] = v4.octets();
    let high = u16::from_be_bytes([a, b]);
    let low = u16::from_be_bytes([c, d]);

    if v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_unspecified()
    {
        assert!(special_use(IpAddr::V4(v4)).is_some(), "{v4} not special-use");
    }
    if v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || v6.is_unique_local()
        || v6.is_unicast_link_local()
    {
        assert!(special_use(IpAddr::V6(v6)).is_some(), "{v6} not special-use");
    }

    if special_use(IpAddr::V4(v4)).is_some() {
        let s = v6.segments();
        let forms = [
            ("IPv4-mapped", v4.to_ipv6_mapped()),
            ("SIIT", Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, high, low)),
            ("IPv4-compatible", Ipv6Addr::new(0, 0, 0, 0, 0, 0, high, low)),
            ("NAT64", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, high, low)),
            ("6to4", Ipv6Addr::new(0x2002, high, low, 0, 0, 0, 0, 0)),
            ("6to4", Ipv6Addr::new(0x2002, high, low, s[3], s[4], s[5], s[6], s[7])),
        ];
        for (form, wrapped) in forms {
            assert!(
                special_use(IpAddr::V6(wrapped)).is_some(),
                "{v4} is special-use but its {form} form {wrapped} is not"
            );
        }
    }

    check_rules(IpAddr::V4(v4));
    check_rules(IpAddr::V6(v6));
});
