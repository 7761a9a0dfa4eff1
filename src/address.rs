//! Special-use IP addresses (RFC 6890 and its updates): the addresses the CIMD fetcher
//! must never connect to on behalf of a stranger (rules 17, 18, 22; vectors B1–B7), and
//! that no URI an AS may fetch later should name (F-8). [`AddressRules`] adds the
//! operator's own deny list (`cimd.deny_cidrs`) and the development switch for loopback.
//!
//! Pure: tests exercise every range as a function on addresses, never with a connection.
//! Addresses that embed an IPv4 address (IPv4-mapped, SIIT, IPv4-compatible, NAT64, 6to4)
//! are judged by what they embed as well as by their own range.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses are refused: the special-use set, always; the operator's CIDRs; and
/// loopback, unless the development switch `allow_loopback` lets it through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressRules {
    pub allow_loopback: bool,
    pub deny: Vec<Cidr>,
}

impl AddressRules {
    /// Why `ip` is refused, in words (`10.0.0.5 is in private 10.0.0.0/8`), or `None`.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        // The deny list matches an IPv4-mapped spelling of its IPv4 ranges (`contains`
        // canonicalizes); the special-use set judges the address as written, so that
        // `::ffff:0:0/96` stays special-use whatever it embeds.
        if let Some(cidr) = self.deny.iter().find(|cidr| cidr.contains(ip)) {
            return Some(format!("{ip} is in {cidr}, which cimd.deny_cidrs refuses"));
        }
        if self.allow_loopback && is_loopback(ip) {
            return None;
        }
        special_use(ip).map(|range| format!("{ip} is in {range}"))
    }

    /// Why the host of `url` is refused: an IP literal by its address, a name when it is
    /// `localhost`. A URL with an IP literal never goes through a resolver, so this check
    /// at URL level is the only one it gets.
    pub fn url_refusal(&self, url: &url::Url) -> Option<String> {
        match url.host()? {
            url::Host::Domain(name) => self.name_refusal(name),
            url::Host::Ipv4(ip) => self.refusal(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => self.refusal(IpAddr::V6(ip)),
        }
    }

    /// Why a host name is refused before it is resolved: `localhost` and its subdomains
    /// (RFC 6761), unless loopback is allowed.
    pub fn name_refusal(&self, name: &str) -> Option<String> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let local = name == "localhost" || name.ends_with(".localhost");
        (local && !self.allow_loopback).then(|| "the name localhost".to_owned())
    }
}

/// An address range, `203.0.113.0/24` or `64:ff9b:1::/48`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(network) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(network) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a CIDR range (address/prefix)"))?;
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= max)
            .ok_or_else(|| format!("`/{prefix}` is not a prefix length of 0–{max}"))?;
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

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
    (
        [0, 0, 0, 0, 0xffff, 0, 0, 0],
        96,
        "IPv4-translated (SIIT) ::ffff:0:0:0/96",
    ),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible ::/96"),
    ([0, 0, 0, 0, 0, 0, 0, 0], 8, "reserved ::/8"),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 64:ff9b::/96"),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local NAT64 64:ff9b:1::/48",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only 100::/64"),
    (
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "dummy IPv6 prefix 100:0:0:1::/64 (RFC 9780)",
    ),
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
    (
        [0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "AS112-v6 2620:4f:8000::/48",
    ),
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
    // `::` and `::1` are themselves, not IPv4-compatible 0.0.0.0 and 0.0.0.1.
    if ip == Ipv6Addr::UNSPECIFIED {
        return Some("unspecified ::");
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some("loopback ::1");
    }
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
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _] => Some(low32),
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

    /// F-13: the ranges the review found missing, and `::1` named as itself.
    #[test]
    fn siit_the_rest_of_colon_colon_slash_8_the_dummy_prefix_and_as112_v6_are_refused() {
        for (address, range) in [
            (
                "::ffff:0:5db8:d822",
                "IPv4-translated (SIIT) ::ffff:0:0:0/96",
            ),
            ("::ffff:0:a00:1", "private 10.0.0.0/8"),
            ("1::1", "reserved ::/8"),
            ("ff::1", "reserved ::/8"),
            (
                "100:0:0:1::5",
                "dummy IPv6 prefix 100:0:0:1::/64 (RFC 9780)",
            ),
            ("2620:4f:8000::1", "AS112-v6 2620:4f:8000::/48"),
            ("::1", "loopback ::1"),
            ("::", "unspecified ::"),
        ] {
            assert_eq!(
                special_use(address.parse().unwrap()),
                Some(range),
                "{address}"
            );
        }
        assert!(!refused("2620:4f:8001::1"), "next to AS112-v6 is public");
    }

    #[test]
    fn the_operators_deny_list_refuses_its_ranges_in_any_notation() {
        let rules = AddressRules {
            allow_loopback: true,
            deny: vec![
                "64:ff9b:1::/48".parse().unwrap(),
                "93.184.216.0/24".parse().unwrap(),
            ],
        };
        assert_eq!(
            rules.refusal("93.184.216.34".parse().unwrap()).as_deref(),
            Some("93.184.216.34 is in 93.184.216.0/24, which cimd.deny_cidrs refuses")
        );
        assert!(
            rules
                .refusal("::ffff:93.184.216.34".parse().unwrap())
                .is_some(),
            "an IPv4-mapped spelling of a denied address"
        );
        assert!(
            rules
                .refusal("64:ff9b:1::8.8.8.8".parse().unwrap())
                .is_some()
        );
        assert_eq!(
            rules.refusal("127.0.0.1".parse().unwrap()),
            None,
            "loopback allowed"
        );
        assert_eq!(rules.refusal("8.8.8.8".parse().unwrap()), None);
        assert_eq!(
            AddressRules::default()
                .refusal("127.0.0.1".parse().unwrap())
                .as_deref(),
            Some("127.0.0.1 is in loopback 127.0.0.0/8")
        );
    }

    #[test]
    fn a_cidr_that_does_not_parse_says_why() {
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err(),
            "`/33` is not a prefix length of 0–32"
        );
        assert!(
            "10.0.0.0"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("address/prefix")
        );
        assert!(
            "nonsense/8"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("not an IP address")
        );
    }
}
