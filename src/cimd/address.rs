//! Special-use IP addresses (RFC 6890 and its updates): the addresses the CIMD fetcher
//! must never connect to on behalf of a stranger (rules 17, 18, 22; vectors B1–B7).
//!
//! Pure: tests exercise every range as a function on addresses, never with a connection.
//! Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
//! Teredo) are judged by what they embed as well as by their own range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: the name of its special-use range.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_use_v4(v4),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

/// True for the loopback addresses (127.0.0.0/8, ::1, and IPv4-mapped loopback), which the
/// `allow_loopback` development switch lets through.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

const V4_RANGES: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" 0.0.0.0/8"),
    ([10, 0, 0, 0], 8, "private 10.0.0.0/8"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT 100.64.0.0/10"),
    ([127, 0, 0, 0], 8, "loopback 127.0.0.0/8"),
    (
        [169, 254, 0, 0],
        16,
        "link-local 169.254.0.0/16 (cloud metadata)",
    ),
    ([172, 16, 0, 0], 12, "private 172.16.0.0/12"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments 192.0.0.0/24"),
    ([192, 0, 2, 0], 24, "documentation 192.0.2.0/24"),
    ([192, 31, 196, 0], 24, "AS112 192.31.196.0/24"),
    ([192, 52, 193, 0], 24, "AMT 192.52.193.0/24"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast 192.88.99.0/24"),
    ([192, 168, 0, 0], 16, "private 192.168.0.0/16"),
    ([192, 175, 48, 0], 24, "AS112 192.175.48.0/24"),
    ([198, 18, 0, 0], 15, "benchmarking 198.18.0.0/15"),
    ([198, 51, 100, 0], 24, "documentation 198.51.100.0/24"),
    ([203, 0, 113, 0], 24, "documentation 203.0.113.0/24"),
    ([224, 0, 0, 0], 4, "multicast 224.0.0.0/4"),
    ([240, 0, 0, 0], 4, "reserved 240.0.0.0/4 (and broadcast)"),
];

const V6_RANGES: &[([u16; 8], u8, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified ::"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback ::1"),
    (
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped ::ffff:0:0/96",
    ),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible ::/96"),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 64:ff9b::/96"),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local NAT64 64:ff9b:1::/48",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only 100::/64"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments 2001::/23 (Teredo, ORCHID, benchmarking)",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation 2001:db8::/32",
    ),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 2002::/16"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation 3fff::/20"),
    (
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "segment routing 5f00::/16",
    ),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local fc00::/7"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local fe80::/10"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local fec0::/10"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast ff00::/8"),
];

fn special_use_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let address = u32::from(ip);
    V4_RANGES.iter().find_map(|(network, prefix, name)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
        (address & mask == u32::from(Ipv4Addr::from(*network)) & mask).then_some(*name)
    })
}

fn special_use_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An embedded IPv4 address that is special-use makes the whole address special-use,
    // whatever range it travels in (B4, B5).
    if let Some(embedded) = embedded_v4(ip)
        && let Some(name) = special_use_v4(embedded)
    {
        return Some(name);
    }
    let address = u128::from(ip);
    V6_RANGES.iter().find_map(|(network, prefix, name)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
        (address & mask == u128::from(Ipv6Addr::from(*network)) & mask).then_some(*name)
    })
}

/// The IPv4 address carried by IPv4-mapped, IPv4-compatible, NAT64 and 6to4 addresses.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let low32 = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    match segments {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32),
        [0x2002, high, low, ..] => Some(Ipv4Addr::new(
            (high >> 8) as u8,
            high as u8,
            (low >> 8) as u8,
            low as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        special_use(text.parse().unwrap()).is_some()
    }

    #[test]
    fn b1_b3_special_use_ipv4_is_refused() {
        for address in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.10",
            "100.64.0.1",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.23",
            "203.0.113.7",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(address), "{address} must be refused");
        }
    }

    #[test]
    fn b4_special_use_ipv6_is_refused() {
        for address in [
            "::1",
            "::",
            "fd12::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.5",
            "::ffff:169.254.169.254",
        ] {
            assert!(refused(address), "{address} must be refused");
        }
    }

    #[test]
    fn b5_nat64_and_6to4_wrapping_loopback_are_refused() {
        assert!(refused("64:ff9b::7f00:1"));
        assert!(refused("2002:7f00:1::"));
        assert!(refused("64:ff9b:1::1"));
    }

    #[test]
    fn public_addresses_are_allowed() {
        for address in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            assert!(!refused(address), "{address} is public and must be allowed");
        }
    }

    #[test]
    fn ipv4_mapped_records_are_refused_even_when_public() {
        // ::ffff:0:0/96 is in the RFC 6890 registry; a name has no business answering with it.
        assert!(refused("::ffff:93.184.216.34"));
    }

    #[test]
    fn nat64_of_a_public_address_is_judged_by_its_range() {
        // The well-known NAT64 prefix is special-use in RFC 6890 whatever it embeds.
        assert!(refused("64:ff9b::5db8:d822"));
    }

    #[test]
    fn loopback_is_recognised_for_the_development_switch() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
