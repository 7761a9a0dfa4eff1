//! Matching the `redirect_uri` of an authorization request against a document's
//! `redirect_uris` (rules 46, 47, 54 and Q12; vectors D1–D14): simple string comparison,
//! except that the port may differ for loopback redirect URIs — `127.0.0.0/8`, `[::1]` and
//! the exact name `localhost` — and never across hosts.

use std::net::Ipv4Addr;

use crate::registration::Code;

/// Why a requested redirect URI was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectRefusal {
    pub code: Code,
    pub message: String,
}

/// The registered URI that `requested` matches. An empty `requested` matches only when
/// exactly one URI is registered (D12, D13).
pub fn match_redirect_uri<'a>(
    registered: &'a [String],
    requested: &str,
) -> Result<&'a str, RedirectRefusal> {
    if requested.is_empty() {
        return match registered {
            [only] => Ok(only),
            _ => Err(RedirectRefusal {
                code: Code::RedirectUriRequired,
                message: format!(
                    "the client registers {} redirect URIs, so the request must name one",
                    registered.len()
                ),
            }),
        };
    }
    registered
        .iter()
        .find(|uri| *uri == requested || loopback_match(uri, requested))
        .map(String::as_str)
        .ok_or_else(|| RedirectRefusal {
            code: Code::RedirectUriMismatch,
            message: format!("`{requested}` is not one of the client's redirect URIs"),
        })
}

/// Equal but for the port, on a loopback host written the same way in both.
fn loopback_match(registered: &str, requested: &str) -> bool {
    match (without_port(registered), without_port(requested)) {
        (Some((registered_host, registered_rest)), Some((requested_host, requested_rest))) => {
            is_loopback_host(&registered_host)
                && registered_host == requested_host
                && registered_rest == requested_rest
        }
        _ => false,
    }
}

/// Splits `scheme://host[:port]rest` into (`scheme://host`, `rest`), dropping the port.
fn without_port(uri: &str) -> Option<(String, &str)> {
    let scheme_end = uri.find("://")? + 3;
    let after = &uri[scheme_end..];
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let host = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port = &authority[colon + 1..];
            if !port.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            &authority[..colon]
        }
        _ => authority,
    };
    Some((format!("{}{host}", &uri[..scheme_end]), rest))
}

fn is_loopback_host(scheme_and_host: &str) -> bool {
    let Some((scheme, host)) = scheme_and_host.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    host == "localhost"
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(registered: &[&str], requested: &str) -> Result<String, Code> {
        let registered: Vec<String> = registered.iter().map(|s| s.to_string()).collect();
        match_redirect_uri(&registered, requested)
            .map(str::to_owned)
            .map_err(|refusal| refusal.code)
    }

    const MISMATCH: Result<String, Code> = Err(Code::RedirectUriMismatch);

    #[test]
    fn d1_loopback_ip_any_port() {
        assert!(
            check(
                &["http://127.0.0.1/callback"],
                "http://127.0.0.1:51004/callback"
            )
            .is_ok()
        );
    }

    #[test]
    fn d2_fixed_loopback_port_may_change() {
        assert!(check(&["http://127.0.0.1:33418/"], "http://127.0.0.1:50000/").is_ok());
    }

    #[test]
    fn d3_localhost_any_port() {
        assert!(
            check(
                &["http://localhost/callback"],
                "http://localhost:58135/callback"
            )
            .is_ok()
        );
    }

    #[test]
    fn d4_localhost_does_not_match_a_loopback_ip() {
        assert_eq!(
            check(
                &["http://localhost/callback"],
                "http://127.0.0.1:58135/callback"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d5_ipv4_loopback_does_not_match_ipv6_loopback() {
        assert_eq!(
            check(&["http://127.0.0.1/callback"], "http://[::1]:5000/callback"),
            MISMATCH
        );
    }

    #[test]
    fn d6_path_must_match() {
        assert_eq!(
            check(
                &["http://127.0.0.1/callback"],
                "http://127.0.0.1:5000/callback/x"
            ),
            MISMATCH
        );
        assert_eq!(
            check(
                &["http://127.0.0.1/callback"],
                "http://127.0.0.1:5000/callback/"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d7_scheme_must_match() {
        assert_eq!(
            check(
                &["http://127.0.0.1/callback"],
                "https://127.0.0.1:5000/callback"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d8_no_port_flexibility_off_loopback() {
        assert_eq!(
            check(
                &["https://app.example.com/cb"],
                "https://app.example.com:8443/cb"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d9_simple_string_comparison() {
        assert_eq!(
            check(
                &["https://app.example.com/cb"],
                "https://APP.example.com/cb"
            ),
            MISMATCH
        );
        assert_eq!(
            check(
                &["https://app.example.com/cb"],
                "https://app.example.com/cb/"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d10_private_addresses_are_not_loopback() {
        assert_eq!(
            check(&["http://192.168.1.1/cb"], "http://192.168.1.1:8080/cb"),
            MISMATCH
        );
    }

    #[test]
    fn d11_loopback_lookalike_host() {
        assert_eq!(
            check(
                &["http://127.0.0.1/callback"],
                "http://127.0.0.1.evil.com/callback"
            ),
            MISMATCH
        );
    }

    #[test]
    fn d12_several_registered_and_none_requested() {
        assert_eq!(
            check(&["http://127.0.0.1/cb", "https://app.example.com/cb"], ""),
            Err(Code::RedirectUriRequired)
        );
    }

    #[test]
    fn d13_one_registered_and_none_requested() {
        assert_eq!(
            check(&["https://app.example.com/cb"], ""),
            Ok("https://app.example.com/cb".into())
        );
    }

    #[test]
    fn d14_exact_match() {
        let claude = "https://claude.ai/api/mcp/auth_callback";
        assert_eq!(check(&[claude], claude), Ok(claude.to_owned()));
    }

    #[test]
    fn ipv6_loopback_port_may_change() {
        assert!(check(&["http://[::1]/cb"], "http://[::1]:8080/cb").is_ok());
    }

    #[test]
    fn query_must_match_on_loopback() {
        assert_eq!(
            check(&["http://127.0.0.1/cb?a=1"], "http://127.0.0.1:9/cb?a=2"),
            MISMATCH
        );
    }
}
