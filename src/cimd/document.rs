//! Validating a fetched Client ID Metadata Document (rules 29–44 and 45–56; vectors
//! C1–C36). Pure: the bytes and the URL they came from in, normalized metadata and findings
//! out. The redirect, URI and key rules are the DCR validator's, so both registration
//! kinds are held to the same rules.

use crate::registration::dcr::{
    Validation, check_auth_method, check_display_names, check_fetchable_extras, check_grants,
    check_keys, check_metadata_uris, check_redirect_uris, check_software_statement, parse_object,
    read_metadata,
};
use crate::registration::findings::{Code, FindingList};
use crate::registration::{ClientMetadata, Profile};
use crate::registration::{capabilities, oidc};

use crate::address::AddressRules;

/// Grant types a CIMD client may keep by default; others are filtered out (C25, C26).
pub const DEFAULT_SUPPORTED_GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];

/// Methods built on a shared symmetric secret, which a public document cannot hold (rule 32).
const SHARED_SECRET_METHODS: &[&str] = &[
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
];

/// What the document check needs besides the bytes.
#[derive(Clone, Debug)]
pub struct DocumentRules {
    pub profile: Profile,
    pub supported_grant_types: Vec<String>,
    /// Which hosts URIs in the document must not name (loopback passes only under the
    /// development switch).
    pub addresses: AddressRules,
}

/// Validates the document served for `client_id`.
pub fn validate_document(body: &[u8], client_id: &str, rules: &DocumentRules) -> Validation {
    let mut findings = FindingList::new(rules.profile);
    let fail = |findings: FindingList| Validation {
        findings: findings.into_vec(),
        ..Validation::default()
    };
    let Ok(text) = std::str::from_utf8(body) else {
        findings.report(Code::InvalidJson, "", "the document is not valid UTF-8");
        return fail(findings);
    };
    let Some(object) = parse_object(text, "the document", &mut findings) else {
        return fail(findings);
    };
    match object.get("client_id") {
        None => findings.report(
            Code::ClientIdMissing,
            "client_id",
            "the document has no `client_id`",
        ),
        Some(serde_json::Value::String(found)) if found == client_id => {}
        Some(found) => findings.report(
            Code::ClientIdMismatch,
            "client_id",
            format!(
                "the document's client_id {found} is not `{client_id}`, the URL it was fetched from"
            ),
        ),
    }
    for secret in ["client_secret", "client_secret_expires_at"] {
        if object.contains_key(secret) {
            findings.report(
                Code::ClientSecretPresent,
                secret,
                format!("a metadata document is public and must not carry `{secret}`"),
            );
        }
    }
    let mut metadata = read_metadata(&object, &mut findings);
    if metadata.client_name.is_none() && !findings.mentions("client_name") {
        findings.report(
            Code::ClientNameMissing,
            "client_name",
            "the document has no `client_name`",
        );
    }
    read_offered_auth_methods(&object, &mut metadata, &mut findings);
    apply_cimd_defaults(&mut metadata, &mut findings);
    filter_grant_types(&mut metadata, rules, &mut findings);
    let redirects = check_redirect_uris(&metadata, &mut findings);
    // Rule 18 / C16 / C31 / F-8: no URI in the document names a special-use host.
    check_metadata_uris(&metadata, &redirects, &rules.addresses, &mut findings);
    check_fetchable_extras(&object, &rules.addresses, &mut findings);
    check_display_names(&metadata, &mut findings);
    let method = metadata.token_endpoint_auth_method.as_str();
    if SHARED_SECRET_METHODS.contains(&method) {
        findings.report(
            Code::SharedSecretAuthMethod,
            "token_endpoint_auth_method",
            format!("`{method}` needs a shared secret, which a public document cannot hold; use `none` or `private_key_jwt`"),
        );
    } else {
        check_auth_method(&metadata, &mut findings);
    }
    check_grants(&metadata, &mut findings);
    check_keys(&metadata, &mut findings);
    oidc::check(&metadata, &redirects, oidc::Source::Document, &mut findings);
    check_software_statement(&metadata, &mut findings);
    if metadata.software_statement.is_some() && !findings.mentions("software_statement") {
        // C33: a document's statement is kept, but not verified or used.
        findings.report(
            Code::SoftwareStatementUnverified,
            "software_statement",
            "software statements in metadata documents are echoed but not verified or used",
        );
    }
    Validation {
        metadata,
        redirects,
        findings: findings.into_vec(),
    }
}

/// Rule 42 / C10: a missing method is `none`, not RFC 7591's `client_secret_basic`; grant
/// and response types take RFC 7591's defaults.
fn apply_cimd_defaults(metadata: &mut ClientMetadata, findings: &mut FindingList) {
    if metadata.token_endpoint_auth_method.is_empty() {
        metadata.token_endpoint_auth_method = "none".to_owned();
        findings.report(
            Code::AuthMethodDefaulted,
            "token_endpoint_auth_method",
            "the document has no `token_endpoint_auth_method`; read as `none`",
        );
    }
    if metadata.grant_types.is_empty() {
        metadata.grant_types = vec!["authorization_code".to_owned()];
    }
    if metadata.response_types.is_empty() {
        metadata.response_types = vec!["code".to_owned()];
    }
}

/// Rule 99 (SEP-3149): a document may list the methods it can use, in its order of
/// preference, instead of naming one. Without a `token_endpoint_auth_method` it gets the
/// first that needs no shared secret; the tenant's authorization server may choose again
/// among those it supports (`registration::capabilities`).
fn read_offered_auth_methods(
    object: &serde_json::Map<String, serde_json::Value>,
    metadata: &mut ClientMetadata,
    findings: &mut FindingList,
) {
    const MEMBER: &str = "token_endpoint_auth_methods_supported";
    let Some(value) = object.get(MEMBER) else {
        return;
    };
    let offered: Option<Vec<String>> = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect()
    });
    let Some(offered) = offered.filter(|offered| !offered.is_empty()) else {
        findings.report(
            Code::InvalidFieldType,
            MEMBER,
            format!("`{MEMBER}` must be a non-empty array of strings"),
        );
        return;
    };
    if metadata.token_endpoint_auth_method.is_empty()
        && let Some(method) = capabilities::choose_auth_method(&offered, None)
    {
        metadata.token_endpoint_auth_method = method.to_owned();
    }
    metadata.token_endpoint_auth_methods_supported = offered;
}

/// Q11 / C25–C26: grant types this AS does not support are dropped with a warning; the
/// implicit grant stays so that the grant check refuses it (C28).
fn filter_grant_types(
    metadata: &mut ClientMetadata,
    rules: &DocumentRules,
    findings: &mut FindingList,
) {
    let (kept, dropped): (Vec<String>, Vec<String>) = metadata
        .grant_types
        .drain(..)
        .partition(|grant| grant == "implicit" || rules.supported_grant_types.contains(grant));
    for grant in &dropped {
        findings.report(
            Code::GrantTypeFiltered,
            "grant_types",
            format!("grant type `{grant}` is not supported here and was removed"),
        );
    }
    metadata.grant_types = kept;
}
