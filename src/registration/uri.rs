//! URI rules shared by every URI-valued member: redirect URIs (rules 45–56) and the
//! display and key URIs (`client_uri`, `logo_uri`, `tos_uri`, `policy_uri`, `jwks_uri`,
//! rule 43).
//!
//! Checks run on the raw string before any parser can "repair" it (rule 11): a WHATWG
//! parser drops tabs, turns `\` into `/` and collapses dot segments, so the string that was
//! checked would not be the string that is used.

use std::net::{IpAddr, Ipv6Addr};

use url::{Host, Url};

use super::findings::Code;

/// Schemes that run code or read local files in a user agent (rule 52, C21), that hand the
/// URI to an operating-system handler that is not the client (`ms-msdt:` was a remote code
/// execution, `search-ms:` a file-search lure), or that are no place to send an
/// authorization code. With private-use schemes accepted (Cursor's `cursor://`), these are
/// what must still never be a redirect target.
const DANGEROUS_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "blob",
    "about",
    "view-source",
    "jar",
    "filesystem",
    "ms-msdt",
    "search-ms",
    "search",
    "ms-officecmd",
    "ms-word",
    "ms-excel",
    "ms-powerpoint",
    "ms-settings",
    "ms-appinstaller",
    "shell",
    "mailto",
    "sms",
    "tel",
    "ws",
    "wss",
    "ftp",
];

/// What kind of place a redirect URI sends the user agent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectKind {
    /// A remote site over TLS.
    Https,
    /// A site on the user's machine: `127.0.0.0/8`, `[::1]` or the name `localhost`.
    Loopback,
    /// A native application's private-use scheme, e.g. `com.example.app:/cb`.
    PrivateScheme,
}

impl RedirectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Https => "https",
            RedirectKind::Loopback => "loopback",
            RedirectKind::PrivateScheme => "private_scheme",
        }
    }
}

/// A redirect URI that passed the hard rules, with the facts policies use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri {
    pub uri: String,
    pub scheme: String,
    /// Lowercase host; empty for private-use schemes without an authority.
    pub host: String,
    pub kind: RedirectKind,
}

/// A rule a URI broke: the code and a message naming the URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriProblem {
    pub code: Code,
    pub message: String,
}

impl UriProblem {
    fn new(code: Code, message: impl Into<String>) -> UriProblem {
        UriProblem {
            code,
            message: message.into(),
        }
    }
}

/// The outcome of checking one redirect URI: the classified URI when no hard rule failed,
/// and every problem found (some of which a profile may treat as warnings).
#[derive(Debug)]
pub struct RedirectCheck {
    pub redirect: Option<RedirectUri>,
    pub problems: Vec<UriProblem>,
}

/// Checks one redirect URI against rules 11, 48–53 and 56, and classifies it.
pub fn check_redirect_uri(raw: &str) -> RedirectCheck {
    let mut problems = Vec::new();
    let fail = |problem: UriProblem| RedirectCheck {
        redirect: None,
        problems: vec![problem],
    };
    if let Some(problem) = raw_string_problem(raw, Code::RedirectUriMalformed) {
        return fail(problem);
    }
    let Some(scheme) = scheme_of(raw) else {
        return fail(UriProblem::new(
            Code::RedirectUriNotAbsolute,
            format!("redirect URI `{raw}` is not absolute: it has no scheme"),
        ));
    };
    if DANGEROUS_SCHEMES.contains(&scheme.as_str()) {
        return fail(dangerous(raw, &scheme));
    }
    if raw.contains('#') {
        return fail(UriProblem::new(
            Code::RedirectUriFragment,
            format!("redirect URI `{raw}` has a fragment"),
        ));
    }
    if authority_of(raw).is_some_and(|authority| authority.contains('*')) {
        return fail(UriProblem::new(
            Code::WildcardRedirectUri,
            format!("redirect URI `{raw}` has a wildcard; redirect URIs match exactly"),
        ));
    }
    let Ok(url) = Url::parse(raw) else {
        return fail(UriProblem::new(
            Code::RedirectUriMalformed,
            format!("redirect URI `{raw}` is not a valid URI"),
        ));
    };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let loopback = url.host().as_ref().is_some_and(is_loopback_host);
    let kind = match scheme.as_str() {
        "https" if host.is_empty() => {
            return fail(UriProblem::new(
                Code::RedirectUriMalformed,
                format!("redirect URI `{raw}` has no host"),
            ));
        }
        "https" if loopback => RedirectKind::Loopback,
        "https" => RedirectKind::Https,
        "http" if loopback => RedirectKind::Loopback,
        "http" => {
            return fail(UriProblem::new(
                Code::InsecureRedirectUri,
                format!("redirect URI `{raw}` uses http on a host that is not loopback; use https"),
            ));
        }
        _ => {
            let code = if scheme.contains('.') {
                Code::PrivateUseScheme
            } else {
                Code::PrivateUseSchemeNotReverseDns
            };
            let message = if code == Code::PrivateUseScheme {
                format!(
                    "redirect URI `{raw}` uses the private-use scheme `{scheme}`, which MCP's \
                     \"localhost or https\" rule does not allow"
                )
            } else {
                format!(
                    "redirect URI `{raw}` uses the private-use scheme `{scheme}`, which is not \
                     reverse-DNS (it has no `.`)"
                )
            };
            problems.push(UriProblem::new(code, message));
            RedirectKind::PrivateScheme
        }
    };
    if kind == RedirectKind::Loopback && host == "localhost" {
        problems.push(UriProblem::new(
            Code::LocalhostRedirectUri,
            format!("redirect URI `{raw}` names `localhost`; a loopback IP literal is recommended"),
        ));
    }
    RedirectCheck {
        redirect: Some(RedirectUri {
            uri: raw.to_owned(),
            scheme,
            host,
            kind,
        }),
        problems,
    }
}

/// Checks a display or key URI (rule 43): absolute, https, no userinfo, no fragment, and
/// never a dangerous scheme. Returns the parsed URL when it is usable at all.
pub fn check_metadata_uri(raw: &str, https_code: Code) -> (Option<Url>, Vec<UriProblem>) {
    if let Some(problem) = raw_string_problem(raw, Code::UriNotAbsolute) {
        return (None, vec![problem]);
    }
    let Some(scheme) = scheme_of(raw) else {
        return (
            None,
            vec![UriProblem::new(
                Code::UriNotAbsolute,
                format!("`{raw}` is not an absolute URI"),
            )],
        );
    };
    if DANGEROUS_SCHEMES.contains(&scheme.as_str()) {
        return (None, vec![dangerous(raw, &scheme)]);
    }
    let Ok(url) = Url::parse(raw) else {
        return (
            None,
            vec![UriProblem::new(
                Code::UriNotAbsolute,
                format!("`{raw}` is not a valid URI"),
            )],
        );
    };
    let mut problems = Vec::new();
    if scheme != "https" {
        problems.push(UriProblem::new(
            https_code,
            format!("`{raw}` does not use https"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push(UriProblem::new(
            Code::UriUserinfo,
            format!("`{raw}` carries a user name or password"),
        ));
    }
    if raw.contains('#') {
        problems.push(UriProblem::new(
            Code::UriFragment,
            format!("`{raw}` has a fragment"),
        ));
    }
    (Some(url), problems)
}

/// True for `127.0.0.0/8`, `::1`, IPv4-mapped loopback and the exact name `localhost`.
pub fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => is_loopback_ip(IpAddr::V6(*ip)),
    }
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// The registrable domain (eTLD+1) of a host name from the public suffix list, or `None`
/// for IP literals, `localhost` and bare public suffixes.
pub fn registrable_domain(host: &str) -> Option<String> {
    if host.is_empty() || host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let domain = psl::domain_str(&host)?;
    // A name under an unlisted TLD matches the list's `*` rule; treat single labels such as
    // `localhost` as having no registrable domain.
    domain.contains('.').then(|| domain.to_owned())
}

fn dangerous(raw: &str, scheme: &str) -> UriProblem {
    UriProblem::new(
        Code::DangerousScheme,
        format!("`{raw}` uses the dangerous scheme `{scheme}:`"),
    )
}

/// Whitespace, control characters, backslashes and bad `%` escapes make a URI that parsers
/// disagree about (rule 11).
fn raw_string_problem(raw: &str, code: Code) -> Option<UriProblem> {
    if raw.is_empty() {
        return Some(UriProblem::new(code, "the URI is empty"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(UriProblem::new(
            code,
            format!(
                "`{}` contains whitespace or control characters",
                raw.escape_default()
            ),
        ));
    }
    if raw.contains('\\') {
        return Some(UriProblem::new(
            code,
            format!("`{raw}` contains a backslash"),
        ));
    }
    if has_bad_percent_escape(raw) {
        return Some(UriProblem::new(
            code,
            format!("`{raw}` contains an invalid `%` escape"),
        ));
    }
    None
}

/// A `%` not followed by two hex digits (rule 11, A20).
pub(crate) fn has_bad_percent_escape(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().any(|(index, byte)| {
        *byte == b'%'
            && !(bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The lowercase scheme of an absolute URI (RFC 3986 §3.1), or `None` when there is none.
fn scheme_of(raw: &str) -> Option<String> {
    let (scheme, _) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// The raw authority (`//` up to the next `/`, `?` or `#`), when the URI has one.
fn authority_of(raw: &str) -> Option<&str> {
    let (_, rest) = raw.split_once(':')?;
    let rest = rest.strip_prefix("//")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}
