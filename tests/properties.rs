//! Properties the security review asked to hold for every input, not only the vectors
//! (F-3, F-5, F-13): checked with generated inputs (proptest) on the pure functions, so no
//! traffic leaves the process.
//!
//! - No client_id that differs from its canonical form is accepted: an accepted client_id
//!   is the URL fetched, byte for byte.
//! - Output is bounded by input: a registration's findings and normalized metadata grow at
//!   most linearly with its body, and the findings not at all past their cap.
//! - No special-use address is accepted through any notation a URL parser reads as one.

use std::net::{Ipv4Addr, Ipv6Addr};

use clientgate::address::AddressRules;
use clientgate::cimd::client_id::check_client_id;
use clientgate::registration::findings::{MAX_FINDINGS, MAX_MESSAGE_CHARS, bounded};
use clientgate::registration::{Profile, validate_dcr};
use proptest::prelude::*;

const PROFILES: [Profile; 3] = [Profile::Mcp, Profile::Strict, Profile::Interop];

fn loopback_allowed() -> AddressRules {
    AddressRules {
        allow_loopback: true,
        deny: Vec::new(),
    }
}

/// Host spellings a URL parser may rewrite: case, percent escapes, fullwidth letters,
/// trailing dots, numeric forms, IDN.
fn host() -> impl Strategy<Value = String> {
    let label = proptest::string::string_regex("[a-zA-Z0-9-]{1,8}").unwrap();
    let piece = prop_oneof![
        label,
        Just("%41pp".to_owned()),
        Just("%2e".to_owned()),
        Just("\u{ff41}pp".to_owned()),
        Just("b\u{fc}cher".to_owned()),
        Just("xn--bcher-kva".to_owned()),
        Just("0x7f".to_owned()),
        Just("0177".to_owned()),
        Just("2130706433".to_owned()),
    ];
    (
        proptest::collection::vec(piece, 1..4),
        prop_oneof![Just(""), Just(".")],
    )
        .prop_map(|(pieces, dot)| format!("{}.example{dot}", pieces.join(".")))
}

fn client_id() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![Just("https://"), Just("HTTPS://"), Just("hTTps://")];
    let port = prop_oneof![
        Just(""),
        Just(":443"),
        Just(":8443"),
        Just(":"),
        Just(":08443")
    ];
    let path = proptest::string::string_regex("/[a-zA-Z0-9%._~-]{1,12}(\\.json)?").unwrap();
    (scheme, host(), port, path)
        .prop_map(|(scheme, host, port, path)| format!("{scheme}{host}{port}{path}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_500))]

    #[test]
    fn an_accepted_client_id_is_the_url_fetched_byte_for_byte(raw in client_id()) {
        for profile in PROFILES {
            let check = check_client_id(&raw, profile, &loopback_allowed());
            if let Some(url) = check.url {
                prop_assert_eq!(url.as_str(), raw.as_str(), "{:?} accepted a rewritten spelling", profile);
            }
        }
    }

    #[test]
    fn any_string_accepted_as_a_client_id_is_its_own_canonical_form(raw in "\\PC{0,60}") {
        let raw = format!("https://{raw}");
        let check = check_client_id(&raw, Profile::Interop, &loopback_allowed());
        if let Some(url) = check.url {
            prop_assert_eq!(url.as_str(), raw.as_str());
        }
    }
}

/// A DCR body of `uris` redirect URIs and a long name.
fn body(uris: &[String], name: &str) -> String {
    serde_json::json!({ "client_name": name, "redirect_uris": uris }).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_registrations_output_is_bounded_by_its_input(
        uris in proptest::collection::vec("\\PC{0,40}", 0..2_000),
        name in "\\PC{0,2000}",
    ) {
        let body = body(&uris, &name);
        let validation = validate_dcr(&body, Profile::Mcp);
        let findings = bounded(validation.findings);
        prop_assert!(findings.len() <= MAX_FINDINGS + 1);
        for finding in &findings {
            prop_assert!(finding.message.chars().count() <= MAX_MESSAGE_CHARS);
        }
        let findings_bytes: usize = findings.iter().map(|f| f.message.len() + f.field.len() + 32).sum();
        // Whatever the body: at most 101 findings of bounded size (4 bytes a character).
        prop_assert!(findings_bytes <= (MAX_FINDINGS + 1) * (MAX_MESSAGE_CHARS * 4 + 120 * 4 + 32));
        // The normalized metadata echoes the body at most once, escapes included.
        prop_assert!(validation.metadata.to_json().len() <= 2 * body.len() + 1024);
    }
}

/// The dotted, integer, hex and octal spellings of an IPv4 address a URL parser accepts,
/// and its IPv4-mapped, SIIT, NAT64 and 6to4 IPv6 forms.
fn spellings(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    let hi = u16::from_be_bytes([a, b]);
    let lo = u16::from_be_bytes([c, d]);
    vec![
        format!("{a}.{b}.{c}.{d}"),
        format!("{n}"),
        format!("0x{n:x}"),
        format!("0{n:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("{a}.{}", u32::from_be_bytes([0, b, c, d])),
        format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
        format!("[::ffff:{a}.{b}.{c}.{d}]"),
        format!("[::ffff:{hi:x}:{lo:x}]"),
        format!("[::ffff:0:{hi:x}:{lo:x}]"),
        format!("[64:ff9b::{a}.{b}.{c}.{d}]"),
        format!("[2002:{hi:x}:{lo:x}::1]"),
        format!("[::{a}.{b}.{c}.{d}]"),
    ]
}

/// An address in one of the special-use IPv4 ranges.
fn special_use_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(10, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(127, b, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(169, 254, c, d)),
        any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(192, 168, c, d)),
        (16u8..32, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(172, b, c, d)),
        (64u8..128, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(100, b, c, d)),
        any::<[u8; 3]>().prop_map(|[b, c, d]| Ipv4Addr::new(0, b, c, d)),
        (224u8..=255, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn no_special_use_address_is_accepted_through_any_notation(ip in special_use_v4()) {
        for host in spellings(ip) {
            let raw = format!("https://{host}/c.json");
            for profile in PROFILES {
                let check = check_client_id(&raw, profile, &AddressRules::default());
                prop_assert!(check.url.is_none(), "{} accepted under {:?}", raw, profile);
            }
        }
    }

    #[test]
    fn an_ipv6_address_embedding_a_special_use_ipv4_address_is_refused(ip in special_use_v4()) {
        let [a, b, c, d] = ip.octets();
        let rules = AddressRules::default();
        let mapped = ip.to_ipv6_mapped();
        let siit = Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        let six_to_four = Ipv6Addr::new(0x2002, u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0, 0, 0, 1);
        for v6 in [mapped, siit, nat64, six_to_four] {
            prop_assert!(rules.refusal(v6.into()).is_some(), "{} accepted", v6);
        }
    }
}
