//! OpenID Connect Dynamic Client Registration 1.0 §2 members, held to the rules RFC 7591's
//! are (registration rules 87–97): `application_type` and its redirect URIs, the numeric and
//! boolean members, the URIs an AS fetches or redirects to, and the JOSE algorithms with
//! their consistency. Pure, like the rest of validation.

use super::findings::{Code, FindingList};
use super::metadata::ClientMetadata;
use super::uri::{self, RedirectKind, RedirectUri};

/// JWS algorithms (RFC 7518 §3.1, RFC 8037, RFC 8812, the IANA JOSE registry).
const JWS_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "ES256K",
    "PS256", "PS384", "PS512", "EdDSA", "Ed25519", "Ed448", "none",
];

/// JWE key management algorithms (RFC 7518 §4.1).
const JWE_ALGORITHMS: &[&str] = &[
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "dir",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
];

/// JWE content encryption algorithms (RFC 7518 §5.1).
const JWE_ENCRYPTIONS: &[&str] = &[
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
    "A128GCM",
    "A192GCM",
    "A256GCM",
];

/// The kind of registration: `application_type` is asked of DCR clients only (MCP
/// 2026-07-28, SEP-837); a CIMD document's metadata is the publisher's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Dcr,
    Document,
}

/// Every OIDC registration rule over the metadata read, with the redirect URIs that passed
/// the hard rules.
pub(crate) fn check(
    metadata: &ClientMetadata,
    redirects: &[RedirectUri],
    source: Source,
    findings: &mut FindingList,
) {
    check_application_type(metadata, redirects, source, findings);
    if metadata
        .client_name
        .as_deref()
        .is_some_and(|name| name.trim().is_empty())
    {
        findings.report(
            Code::ClientNameEmpty,
            "client_name",
            "`client_name` is empty: the consent screen would show no name",
        );
    }
    for (index, contact) in metadata.contacts.iter().enumerate() {
        if !looks_like_email(contact) {
            findings.report(
                Code::ContactNotEmail,
                &format!("contacts[{index}]"),
                format!("`{contact}` is not an e-mail address"),
            );
        }
    }
    for (index, raw) in metadata.post_logout_redirect_uris.iter().enumerate() {
        let field = format!("post_logout_redirect_uris[{index}]");
        for problem in uri::check_redirect_uri(raw).problems {
            findings.report(problem.code, &field, problem.message);
        }
    }
    let fetched = [
        ("initiate_login_uri", metadata.initiate_login_uri.as_deref()),
        (
            "sector_identifier_uri",
            metadata.sector_identifier_uri.as_deref(),
        ),
    ];
    let request_uris = metadata
        .request_uris
        .iter()
        .enumerate()
        .map(|(index, raw)| (format!("request_uris[{index}]"), raw.as_str()));
    let uris = fetched
        .into_iter()
        .filter_map(|(field, raw)| Some((field.to_owned(), raw?)))
        .chain(request_uris);
    for (field, raw) in uris {
        let https = url::Url::parse(raw).is_ok_and(|url| url.scheme() == "https" && url.has_host());
        if !https {
            findings.report(
                Code::HttpsRequired,
                &field,
                format!("`{field}` must be an absolute https URL, not `{raw}`"),
            );
        }
    }
    check_algorithms(metadata, findings);
}

/// Rules 87 and 88: `application_type` is `web` or `native`, sent by DCR clients, and agrees
/// with the redirect URIs — native clients redirect to loopback or a private-use scheme,
/// web clients to https.
fn check_application_type(
    metadata: &ClientMetadata,
    redirects: &[RedirectUri],
    source: Source,
    findings: &mut FindingList,
) {
    let Some(application_type) = metadata.application_type.as_deref() else {
        if source == Source::Dcr {
            findings.report(
                Code::ApplicationTypeMissing,
                "application_type",
                "MCP 2026-07-28 asks DCR clients to send `application_type` (`native` or `web`); an OpenID provider reads it as `web`",
            );
        }
        return;
    };
    let has = |kind: RedirectKind| redirects.iter().any(|redirect| redirect.kind == kind);
    let contradiction = match application_type {
        "native" if has(RedirectKind::Https) => {
            "a `native` client redirects to loopback or a private-use scheme, but a redirect URI is a remote https URL"
        }
        "web" if !redirects.is_empty() && !has(RedirectKind::Https) => {
            "a `web` client redirects to https, but every redirect URI is loopback or a private-use scheme"
        }
        "native" | "web" => return,
        other => {
            findings.report(
                Code::ApplicationTypeInvalid,
                "application_type",
                format!("`application_type` is `web` or `native`, not `{other}`"),
            );
            return;
        }
    };
    findings.report(
        Code::ApplicationTypeMismatch,
        "application_type",
        contradiction,
    );
}

/// Rules 92–94 and 97: registered algorithm names, no unsigned ID tokens, an `_enc` only
/// with its `_alg`, and a token endpoint signing algorithm that fits the method.
fn check_algorithms(metadata: &ClientMetadata, findings: &mut FindingList) {
    let signing = [
        (
            "id_token_signed_response_alg",
            &metadata.id_token_signed_response_alg,
        ),
        (
            "userinfo_signed_response_alg",
            &metadata.userinfo_signed_response_alg,
        ),
        (
            "request_object_signing_alg",
            &metadata.request_object_signing_alg,
        ),
        (
            "token_endpoint_auth_signing_alg",
            &metadata.token_endpoint_auth_signing_alg,
        ),
    ];
    for (field, value) in signing {
        if let Some(alg) = value {
            known(field, alg, JWS_ALGORITHMS, findings);
        }
    }
    let encryption = [
        (
            "id_token_encrypted_response",
            &metadata.id_token_encrypted_response_alg,
            &metadata.id_token_encrypted_response_enc,
        ),
        (
            "userinfo_encrypted_response",
            &metadata.userinfo_encrypted_response_alg,
            &metadata.userinfo_encrypted_response_enc,
        ),
        (
            "request_object_encryption",
            &metadata.request_object_encryption_alg,
            &metadata.request_object_encryption_enc,
        ),
    ];
    for (prefix, alg, enc) in encryption {
        let (alg_field, enc_field) = (format!("{prefix}_alg"), format!("{prefix}_enc"));
        if let Some(alg) = alg {
            known(&alg_field, alg, JWE_ALGORITHMS, findings);
        }
        if let Some(enc) = enc {
            known(&enc_field, enc, JWE_ENCRYPTIONS, findings);
            if alg.is_none() {
                findings.report(
                    Code::EncryptionAlgMissing,
                    &enc_field,
                    format!("`{enc_field}` needs `{alg_field}`: the encryption is not usable without its key algorithm"),
                );
            }
        }
    }
    if metadata.id_token_signed_response_alg.as_deref() == Some("none") {
        findings.report(
            Code::UnsignedIdToken,
            "id_token_signed_response_alg",
            "unsigned ID tokens (`none`) let anyone forge an identity; OpenID Connect allows them only without ID tokens from the authorization endpoint, and node-oidc-provider refuses them",
        );
    }
    let Some(alg) = metadata.token_endpoint_auth_signing_alg.as_deref() else {
        return;
    };
    let hmac = alg.starts_with("HS");
    let problem = match metadata.token_endpoint_auth_method.as_str() {
        _ if alg == "none" => Some("`none` must not be used to sign a client's assertion"),
        "client_secret_jwt" if !hmac => Some(
            "`client_secret_jwt` signs with the client secret: an HMAC algorithm (HS256, HS384, HS512)",
        ),
        "private_key_jwt" if hmac => Some(
            "`private_key_jwt` signs with the client's private key: an asymmetric algorithm, not HMAC",
        ),
        _ => None,
    };
    if let Some(problem) = problem {
        findings.report(
            Code::AuthSigningAlgMismatch,
            "token_endpoint_auth_signing_alg",
            format!("`{alg}` does not fit: {problem}"),
        );
    }
}

fn known(field: &str, value: &str, registered: &[&str], findings: &mut FindingList) {
    if !registered.contains(&value) {
        findings.report(
            Code::UnknownAlgorithm,
            field,
            format!("`{value}` is not a registered JOSE algorithm for `{field}`"),
        );
    }
}

/// `local@domain` with no spaces, a dot-free local part allowed, a domain with a dot:
/// enough to tell an address from a URL, a phone number or free text.
fn looks_like_email(contact: &str) -> bool {
    let contact = contact.strip_prefix("mailto:").unwrap_or(contact);
    let Some((local, domain)) = contact.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !contact.chars().any(char::is_whitespace)
}
