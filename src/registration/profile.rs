//! Validation profiles and the one table of disputed rules.
//!
//! The specs disagree on details (registration rules reference, "Open questions"). Each
//! disputed rule is an error, a warning or off in each profile, and this file is the only
//! place that says which. Every code not in [`DISPUTED`] is an error in every profile.

use super::findings::{Code, Severity};

/// Which reading of the specs validation follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// MCP 2025-11-25 plus the CIMD draft MUSTs, interoperable with real clients.
    #[default]
    Mcp,
    /// Every SHOULD is an error.
    Strict,
    /// Lenient, for diagnosing problems.
    Interop,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Mcp => "mcp",
            Profile::Strict => "strict",
            Profile::Interop => "interop",
        }
    }

    pub fn parse(text: &str) -> Option<Profile> {
        match text {
            "mcp" => Some(Profile::Mcp),
            "strict" => Some(Profile::Strict),
            "interop" => Some(Profile::Interop),
            _ => None,
        }
    }
}

/// What a rule amounts to in one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Off,
}

use Level::{Error, Off, Warning};

/// Disputed rules: code, then its level under `mcp`, `strict`, `interop`.
pub const DISPUTED: &[(Code, [Level; 3])] = &[
    // Q13: reverse-DNS private-use schemes (`com.example.app:/cb`) against MCP's "localhost or https".
    (Code::PrivateUseScheme, [Warning, Error, Off]),
    // Rule 52: a private-use scheme without a dot SHOULD be rejected (RFC 8252 §7.1), but
    // real clients use one (Cursor `cursor://`, VS Code `vscode://`, Raycast, Windsurf):
    // a warning where real clients must register, an error only in `strict`.
    (
        Code::PrivateUseSchemeNotReverseDns,
        [Warning, Error, Warning],
    ),
    // Rule 48 / Q12: the name `localhost` is NOT RECOMMENDED; Claude Code and Codex use it.
    (Code::LocalhostRedirectUri, [Off, Error, Off]),
    // Rule 43: display URIs over http, with userinfo or a fragment.
    (Code::UriNotHttps, [Warning, Error, Off]),
    (Code::UriUserinfo, [Warning, Error, Off]),
    (Code::UriFragment, [Warning, Error, Off]),
    // Rule 70: display URIs on another host than the redirect URIs: a review flag (E17).
    (Code::UriHostMismatch, [Warning, Warning, Off]),
    // Rule 81: inconsistent grant and response types is a SHOULD.
    (
        Code::InconsistentGrantResponseTypes,
        [Error, Error, Warning],
    ),
    // Rule 41: OAuth 2.1 removes the implicit grant.
    (Code::UnsupportedGrantType, [Error, Error, Warning]),
    // E7: a public client asking for client_credentials.
    (Code::PublicClientCredentials, [Error, Error, Warning]),
    // E9: RFC 7591 lets the server reject or replace an unknown method.
    (Code::UnknownAuthMethod, [Error, Error, Warning]),
    // E15: a client_id in a DCR request is ignored; the server issues its own.
    (Code::ClientIdIgnored, [Warning, Warning, Off]),
    // Q1: a client_id whose path is only `/` is NOT RECOMMENDED (-02); SDKs reject it.
    (Code::RootPath, [Warning, Error, Warning]),
    // Rule 6 / Q2: a query in a client_id is SHOULD NOT.
    (Code::QueryDiscouraged, [Warning, Error, Warning]),
    // F-11: a name that could spoof a consent screen is reported to policies (which step
    // it up), not refused by validation: real names are written in every script.
    (Code::ClientNameBidiControl, [Warning, Warning, Warning]),
    (
        Code::ClientNameControlCharacter,
        [Warning, Warning, Warning],
    ),
    (
        Code::ClientNameInvisibleCharacter,
        [Warning, Warning, Warning],
    ),
    (Code::ClientNameMixedScripts, [Warning, Warning, Warning]),
    (Code::ClientNameConfusable, [Warning, Warning, Warning]),
    // Rule 31 / Q9 / C29: MCP requires client_name; generic CIMD shows the hostname instead.
    (Code::ClientNameMissing, [Error, Error, Off]),
    // Q11 / C25: grant types the AS does not support are filtered, not fatal.
    (Code::GrantTypeFiltered, [Warning, Warning, Warning]),
    // Q10 / C10: a missing token_endpoint_auth_method is read as `none`.
    (Code::AuthMethodDefaulted, [Warning, Warning, Warning]),
    // Rule 25 / Q7 / B20: a document served as text/html; node-oidc-provider accepts it.
    (Code::BadMediaType, [Error, Error, Warning]),
    // Rule 82: a statement clientgate cannot verify is ignored, its claims unused.
    (
        Code::SoftwareStatementUnverified,
        [Warning, Warning, Warning],
    ),
    // Rule 87 / SEP-837: MCP 2026-07-28 clients MUST send `application_type`; Cursor,
    // Claude Code, Codex, ChatGPT and Gemini CLI do not yet.
    (Code::ApplicationTypeMissing, [Warning, Error, Off]),
    // Rule 88: OIDC knows `web` and `native` only; node-oidc-provider refuses the rest.
    (Code::ApplicationTypeInvalid, [Error, Error, Warning]),
    // Rule 88: `native` with a remote https redirect (VS Code's `vscode.dev/redirect`, which
    // VS Code admits breaks the spec) or `web` with only loopback redirects.
    (Code::ApplicationTypeMismatch, [Warning, Error, Warning]),
    // Rule 91: OIDC says https for these; a lenient reading for diagnosis only.
    (Code::HttpsRequired, [Error, Error, Warning]),
    // Rule 93: allowed by OIDC for code-only clients, removed by node-oidc-provider.
    (Code::UnsignedIdToken, [Error, Error, Warning]),
    // Rule 95: RFC 7591 says contacts are "typically" e-mail addresses; OIDC says they are.
    (Code::ContactNotEmail, [Warning, Error, Off]),
    // Rule 96: an empty `client_name` shows nothing on the consent screen.
    (Code::ClientNameEmpty, [Error, Error, Warning]),
    // Rule 96: SDKs echo empty optional members (MCP Inspector's `"scope": ""`); read as
    // absent, with a warning, except in `strict`.
    (Code::EmptyValue, [Warning, Error, Off]),
    // Rule 97: names outside the JOSE registry.
    (Code::UnknownAlgorithm, [Error, Error, Warning]),
    // Rule 98: RFC 7591 lets the AS reject or replace what it does not support. Real
    // clients ask for grants and scopes the AS never advertised (VS Code's device grant,
    // Gemini CLI's every scope): filtered with a warning, except in `strict`.
    (Code::GrantTypeUnsupported, [Warning, Error, Warning]),
    (Code::ScopeUnsupported, [Warning, Error, Warning]),
    // Rule 98: a response type or method the AS cannot serve would break the client.
    (Code::ResponseTypeUnsupported, [Error, Error, Warning]),
    (Code::AuthMethodUnsupported, [Error, Error, Warning]),
    // Rule 100: a CIMD document that changed is news for policies, not a violation.
    (
        Code::DocumentRedirectUrisChanged,
        [Warning, Warning, Warning],
    ),
    (Code::DocumentKeysChanged, [Warning, Warning, Warning]),
    (Code::DocumentChanged, [Warning, Warning, Warning]),
];

/// The level of `code` under `profile`.
pub fn level(code: Code, profile: Profile) -> Level {
    let column = match profile {
        Profile::Mcp => 0,
        Profile::Strict => 1,
        Profile::Interop => 2,
    };
    DISPUTED
        .iter()
        .find(|(disputed, _)| *disputed == code)
        .map_or(Error, |(_, levels)| levels[column])
}

/// The severity of `code` under `profile`, or `None` when the profile turns it off.
pub fn severity(code: Code, profile: Profile) -> Option<Severity> {
    match level(code, profile) {
        Error => Some(Severity::Error),
        Warning => Some(Severity::Warning),
        Off => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_disputed_code_appears_once_in_the_table() {
        for (index, (code, _)) in DISPUTED.iter().enumerate() {
            let later = DISPUTED[index + 1..].iter().any(|(other, _)| other == code);
            assert!(!later, "{code} is listed twice in DISPUTED");
        }
    }

    #[test]
    fn undisputed_codes_are_errors_in_every_profile() {
        for profile in [Profile::Mcp, Profile::Strict, Profile::Interop] {
            assert_eq!(level(Code::RedirectUriFragment, profile), Error);
            assert_eq!(level(Code::DangerousScheme, profile), Error);
        }
    }

    #[test]
    fn strict_is_never_more_lenient_than_mcp() {
        let rank = |level: Level| match level {
            Off => 0,
            Warning => 1,
            Error => 2,
        };
        for (code, [mcp, strict, _]) in DISPUTED {
            assert!(
                rank(*strict) >= rank(*mcp),
                "{code}: strict is laxer than mcp"
            );
        }
    }
}
