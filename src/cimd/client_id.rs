//! The shape of a CIMD `client_id` URL, checked on the raw string before any network
//! activity (rules 1–12 and 17; vectors A1–A23, B1–B4).
//!
//! Checks run on the raw string because a WHATWG parser "repairs" what it reads: it drops
//! tabs, turns `\` into `/`, collapses `/./` and `/../`, and lower-cases the host, so the
//! string that was checked would not be the one fetched or compared with the document.

use url::Url;

use crate::address::AddressRules;
use crate::registration::Profile;
use crate::registration::findings::{Code, Finding, FindingList};
use crate::registration::uri::has_bad_percent_escape;

/// The longest client_id accepted (rule 12; the draft sets no limit, Auth0 uses 120).
pub const MAX_CLIENT_ID_BYTES: usize = 1024;

const FIELD: &str = "client_id";

/// The outcome of checking a client_id: the URL to fetch when no rule failed, and every
/// finding.
#[derive(Debug)]
pub struct ClientIdCheck {
    pub url: Option<Url>,
    pub findings: Vec<Finding>,
}

/// Checks `raw` under `profile`; `addresses` says which IP literals and names are refused
/// (the special-use set, the operator's deny list, loopback unless allowed).
pub fn check_client_id(raw: &str, profile: Profile, addresses: &AddressRules) -> ClientIdCheck {
    let mut findings = FindingList::new(profile);
    let url = check(raw, &mut findings, addresses);
    let url = url.filter(|_| !findings.has_errors());
    ClientIdCheck {
        url,
        findings: findings.into_vec(),
    }
}

fn check(raw: &str, findings: &mut FindingList, addresses: &AddressRules) -> Option<Url> {
    if raw.len() > MAX_CLIENT_ID_BYTES {
        findings.report(
            Code::TooLong,
            FIELD,
            format!(
                "the client_id is {} bytes, over the {MAX_CLIENT_ID_BYTES}-byte limit",
                raw.len()
            ),
        );
        return None;
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) || raw.contains('\\') {
        findings.report(
            Code::InvalidCharacters,
            FIELD,
            format!(
                "`{}` contains whitespace, control characters or a backslash",
                raw.escape_default()
            ),
        );
        return None;
    }
    if has_bad_percent_escape(raw) {
        findings.report(
            Code::BadPercentEncoding,
            FIELD,
            format!("`{raw}` contains an invalid `%` escape"),
        );
        return None;
    }
    let Some((scheme, rest)) = raw.split_once(':') else {
        findings.report(
            Code::NotHttps,
            FIELD,
            format!("`{raw}` is not an https URL"),
        );
        return None;
    };
    if !scheme.eq_ignore_ascii_case("https") {
        findings.report(
            Code::NotHttps,
            FIELD,
            format!("`{raw}` does not use the https scheme"),
        );
        return None;
    }
    if scheme != "https" {
        findings.report(
            Code::NonCanonical,
            FIELD,
            format!("`{raw}` writes the scheme as `{scheme}`; the document's client_id must match it byte for byte"),
        );
    }
    let Some(after_slashes) = rest.strip_prefix("//") else {
        findings.report(Code::NoAuthority, FIELD, format!("`{raw}` has no `//host`"));
        return None;
    };
    let authority_end = after_slashes
        .find(['/', '?', '#'])
        .unwrap_or(after_slashes.len());
    let (authority, path_and_more) = after_slashes.split_at(authority_end);
    if authority.is_empty() {
        findings.report(Code::NoAuthority, FIELD, format!("`{raw}` has no host"));
        return None;
    }
    if authority.contains('@') {
        findings.report(
            Code::Userinfo,
            FIELD,
            format!("`{raw}` carries a user name or password"),
        );
        return None;
    }
    if raw.contains('#') {
        findings.report(Code::Fragment, FIELD, format!("`{raw}` has a fragment"));
    }
    check_authority(raw, authority, findings);
    let path_end = path_and_more
        .find(['?', '#'])
        .unwrap_or(path_and_more.len());
    let path = &path_and_more[..path_end];
    match path {
        "" => findings.report(Code::NoPath, FIELD, format!("`{raw}` has no path")),
        "/" => findings.report(
            Code::RootPath,
            FIELD,
            format!("`{raw}` has only `/` as its path, which is NOT RECOMMENDED"),
        ),
        _ => {}
    }
    if path.split('/').any(is_dot_segment) {
        findings.report(
            Code::DotSegment,
            FIELD,
            format!("`{raw}` has a `.` or `..` path segment"),
        );
    }
    if path_and_more[path_end..].starts_with('?') {
        findings.report(
            Code::QueryDiscouraged,
            FIELD,
            format!("`{raw}` has a query, which client_ids SHOULD NOT have"),
        );
    }
    let Ok(url) = Url::parse(raw) else {
        findings.report(
            Code::InvalidCharacters,
            FIELD,
            format!("`{raw}` is not a valid URL"),
        );
        return None;
    };
    if let Some(reason) = addresses.url_refusal(&url) {
        findings.report(
            Code::SpecialUseAddress,
            FIELD,
            format!("`{raw}` names a special-use address ({reason}); it is never fetched"),
        );
    }
    // The string the AS sent is the URL fetched and the string the document must name,
    // byte for byte (rule 9, F-5): any spelling the parser would rewrite — percent-escaped
    // or non-ASCII host octets, fullwidth letters, numeric IPv4 forms, an empty port — is
    // another identifier for the same document, and is refused.
    if url.as_str() != raw && !findings.has_errors() {
        findings.report(
            Code::NonCanonical,
            FIELD,
            format!(
                "`{raw}` is not in canonical form (it is fetched as `{}`); the client_id must be \
                 that URL byte for byte",
                url.as_str()
            ),
        );
    }
    Some(url)
}

/// Port and host case (Q3): `:0`, a port out of range, `:443` or an upper-case host.
fn check_authority(raw: &str, authority: &str, findings: &mut FindingList) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(0) | Err(_) => findings.report(
                Code::InvalidPort,
                FIELD,
                format!("`{raw}` has the invalid port `{port}`"),
            ),
            Ok(443) => findings.report(
                Code::NonCanonical,
                FIELD,
                format!(
                    "`{raw}` spells out the default port 443; the canonical form leaves it out"
                ),
            ),
            Ok(_) if port.starts_with('0') => findings.report(
                Code::NonCanonical,
                FIELD,
                format!("`{raw}` writes its port with a leading zero"),
            ),
            Ok(_) => {}
        }
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        findings.report(
            Code::NonCanonical,
            FIELD,
            format!("`{raw}` has upper-case letters in its host; the canonical form is lower case"),
        );
    }
}

/// `.` and `..`, with `%2e` read as a dot (RFC 3986 §6.2.2.2); `%252e` is not a dot (A8).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The development switch on, nothing denied beyond the special-use set.
    const LOOPBACK: AddressRules = AddressRules {
        allow_loopback: true,
        deny: Vec::new(),
    };

    enum Expect {
        Accept,
        Warn(&'static str),
        Reject(&'static str),
    }
    use Expect::{Accept, Reject, Warn};

    const U0: &str = "https://app.example.com/oauth/client.json";

    fn cases() -> Vec<(&'static str, String, Expect)> {
        vec![
            ("a1_canonical_https_url", U0.to_owned(), Accept),
            (
                "a2_http",
                "http://app.example.com/oauth/client.json".into(),
                Reject("not_https"),
            ),
            (
                "a3_no_path",
                "https://app.example.com".into(),
                Reject("no_path"),
            ),
            (
                "a4_root_path",
                "https://app.example.com/".into(),
                Warn("root_path"),
            ),
            (
                "a5_dot_dot_segment",
                "https://app.example.com/a/../client.json".into(),
                Reject("dot_segment"),
            ),
            (
                "a6_dot_segment",
                "https://app.example.com/./client.json".into(),
                Reject("dot_segment"),
            ),
            (
                "a7_encoded_dot_dot",
                "https://app.example.com/%2e%2e/client.json".into(),
                Reject("dot_segment"),
            ),
            (
                "a7_mixed_encoded_dot_dot",
                "https://app.example.com/.%2E/client.json".into(),
                Reject("dot_segment"),
            ),
            (
                "a8_double_encoding_is_not_a_dot",
                "https://app.example.com/%252e/client".into(),
                Accept,
            ),
            ("a9_fragment", format!("{U0}#x"), Reject("fragment")),
            ("a10_empty_fragment", format!("{U0}#"), Reject("fragment")),
            (
                "a11_user_and_password",
                "https://user:pw@app.example.com/client.json".into(),
                Reject("userinfo"),
            ),
            (
                "a12_user",
                "https://user@app.example.com/client.json".into(),
                Reject("userinfo"),
            ),
            ("a13_query", format!("{U0}?v=2"), Warn("query_discouraged")),
            (
                "a14_port",
                "https://app.example.com:8443/client.json".into(),
                Accept,
            ),
            (
                "a15_leading_space",
                format!(" {U0}"),
                Reject("invalid_characters"),
            ),
            (
                "a15_trailing_tab",
                format!("{U0}\t"),
                Reject("invalid_characters"),
            ),
            (
                "a16_backslash",
                "https://app.example.com\\client.json".into(),
                Reject("invalid_characters"),
            ),
            (
                "a16_backslashes",
                "https:\\\\app.example.com\\c".into(),
                Reject("invalid_characters"),
            ),
            (
                "a17_no_slashes",
                "https:app.example.com/client.json".into(),
                Reject("no_authority"),
            ),
            (
                "a17_empty_host",
                "https:///client.json".into(),
                Reject("no_authority"),
            ),
            (
                "a18_upper_case_scheme",
                "HTTPS://app.example.com/client.json".into(),
                Reject("non_canonical"),
            ),
            (
                "a18_upper_case_host",
                "https://App.Example.com/client.json".into(),
                Reject("non_canonical"),
            ),
            (
                "q3_default_port",
                "https://app.example.com:443/client.json".into(),
                Reject("non_canonical"),
            ),
            (
                "a19_port_zero",
                "https://app.example.com:0/client.json".into(),
                Reject("invalid_port"),
            ),
            (
                "a20_bad_percent_encoding",
                "https://app.example.com/c%ZZ.json".into(),
                Reject("bad_percent_encoding"),
            ),
            ("a21_not_a_url", "my-client-123".into(), Reject("not_https")),
            (
                "a22_too_long",
                format!("https://app.example.com/{}", "a".repeat(4000)),
                Reject("too_long"),
            ),
            (
                "a23_empty_segment",
                "https://app.example.com//client.json".into(),
                Accept,
            ),
            (
                "b1_loopback_ip_literal",
                "https://127.0.0.1/client.json".into(),
                Reject("special_use_address"),
            ),
            (
                "b2_localhost",
                "https://localhost/client.json".into(),
                Reject("special_use_address"),
            ),
            (
                "b3_private",
                "https://10.0.0.5/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b3_private_192",
                "https://192.168.1.10/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b3_cgnat",
                "https://100.64.0.1/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b3_metadata_service",
                "https://169.254.169.254/latest".into(),
                Reject("special_use_address"),
            ),
            (
                "b4_ipv6_loopback",
                "https://[::1]/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b4_ipv6_unique_local",
                "https://[fd12::1]/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b4_ipv6_link_local",
                "https://[fe80::1]/c".into(),
                Reject("special_use_address"),
            ),
            (
                "b4_ipv4_mapped_loopback",
                "https://[::ffff:127.0.0.1]/c".into(),
                Reject("special_use_address"),
            ),
        ]
    }

    #[test]
    fn client_id_vectors() {
        let mut failures = Vec::new();
        for (name, client_id, expect) in cases() {
            let check = check_client_id(&client_id, Profile::Mcp, &AddressRules::default());
            let errors: Vec<&str> = check
                .findings
                .iter()
                .filter(|f| f.is_error())
                .map(|f| f.code.as_str())
                .collect();
            let warnings: Vec<&str> = check
                .findings
                .iter()
                .filter(|f| !f.is_error())
                .map(|f| f.code.as_str())
                .collect();
            let ok = match expect {
                Accept => check.findings.is_empty() && check.url.is_some(),
                Warn(code) => errors.is_empty() && warnings == [code] && check.url.is_some(),
                Reject(code) => errors.contains(&code) && check.url.is_none(),
            };
            if !ok {
                failures.push(format!("{name}: errors {errors:?}, warnings {warnings:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn strict_rejects_a_root_path_and_a_query() {
        for client_id in [
            "https://app.example.com/",
            "https://app.example.com/c.json?v=2",
        ] {
            let check = check_client_id(client_id, Profile::Strict, &AddressRules::default());
            assert!(check.url.is_none(), "{client_id} passes strict");
        }
    }

    #[test]
    fn every_profile_refuses_non_canonical_forms() {
        for profile in [Profile::Mcp, Profile::Strict, Profile::Interop] {
            let check = check_client_id(
                "HTTPS://app.example.com/client.json",
                profile,
                &AddressRules::default(),
            );
            assert!(check.url.is_none(), "{profile:?}");
            assert_eq!(check.findings[0].code.as_str(), "non_canonical");
        }
    }

    /// F-5: spellings a WHATWG parser reads as `https://app.example.com/x.json`.
    #[test]
    fn spellings_the_parser_would_rewrite_are_refused_before_any_fetch() {
        for raw in [
            "https://%41pp.example.com/x.json",
            "https://app.example.co%6D/x.json",
            "https://\u{ff41}pp.example.com/x.json",
            "https://app.example.com:/x.json",
            "https://b\u{fc}cher.example/x.json",
            "https://2130706433/x.json",
            "https://0x7f.1/x.json",
            "https://0177.0.0.1/x.json",
            "https://app.example.com/\u{e4}.json",
            // Found by fuzzing: an IPv4-mapped literal of a public address.
            "https://[::ffff:8f00:1]/c",
        ] {
            let check = check_client_id(raw, Profile::Interop, &LOOPBACK);
            assert!(check.url.is_none(), "{raw} is fetched");
            assert!(
                check.findings.iter().any(|f| f.is_error()),
                "{raw}: {:?}",
                check.findings
            );
        }
    }

    #[test]
    fn an_accepted_client_id_is_the_url_fetched_byte_for_byte() {
        let check = check_client_id(
            "https://app.example.com/x.json",
            Profile::Mcp,
            &AddressRules::default(),
        );
        assert_eq!(
            check.url.unwrap().as_str(),
            "https://app.example.com/x.json"
        );
    }

    #[test]
    fn allow_loopback_lets_loopback_through_but_not_private_ranges() {
        assert!(
            check_client_id("https://127.0.0.1:8443/c.json", Profile::Mcp, &LOOPBACK)
                .url
                .is_some()
        );
        assert!(
            check_client_id("https://localhost/c.json", Profile::Mcp, &LOOPBACK)
                .url
                .is_some()
        );
        assert!(
            check_client_id("https://10.0.0.5/c.json", Profile::Mcp, &LOOPBACK)
                .url
                .is_none()
        );
    }
}
