//! Dynamic Client Registration (RFC 7591) validation: raw request body in, normalized
//! metadata and findings out. Pure: no I/O, no clock, no configuration beyond the profile.

use crate::address::AddressRules;
use serde_json::{Map, Value};

use super::findings::{Code, Finding, FindingList};
use super::metadata::{ClientMetadata, LOCALIZABLE};
use super::oidc;
use super::profile::Profile;
use super::software_statement;
use super::uri::{self, RedirectKind, RedirectUri};

/// Token endpoint authentication methods clientgate knows (RFC 7591 §2, the IANA registry).
const KNOWN_AUTH_METHODS: &[&str] = &[
    "none",
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];

/// JWK members that only private or symmetric keys carry (rule 34).
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth"];

/// The outcome of validating one registration.
#[derive(Clone, Debug, Default)]
pub struct Validation {
    pub metadata: ClientMetadata,
    /// Redirect URIs that passed the hard rules, classified.
    pub redirects: Vec<RedirectUri>,
    pub findings: Vec<Finding>,
}

impl Validation {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

/// Validates an RFC 7591 request body (rules 35–37, 41, 43, 45–53, 56, 76–85).
pub fn validate_dcr(metadata_json: &str, profile: Profile) -> Validation {
    let mut findings = FindingList::new(profile);
    let Some(object) = parse_object(metadata_json, "the registration metadata", &mut findings)
    else {
        return Validation {
            findings: findings.into_vec(),
            ..Validation::default()
        };
    };
    let mut metadata = read_metadata(&object, &mut findings);
    let redirects = check_redirect_uris(&metadata, &mut findings);
    // The AS fetches some of these later (jwks_uri for private_key_jwt, logos): none may
    // name a special-use host (F-8).
    let addresses = AddressRules::default();
    check_metadata_uris(&metadata, &redirects, &addresses, &mut findings);
    check_fetchable_extras(&object, &addresses, &mut findings);
    check_display_names(&metadata, &mut findings);
    apply_defaults(&mut metadata);
    check_auth_method(&metadata, &mut findings);
    check_grants(&metadata, &mut findings);
    check_keys(&metadata, &mut findings);
    oidc::check(&metadata, &redirects, oidc::Source::Dcr, &mut findings);
    if object.contains_key("client_id") {
        findings.report(
            Code::ClientIdIgnored,
            "client_id",
            "a `client_id` in a registration request is ignored: the authorization server issues one",
        );
    }
    check_software_statement(&metadata, &mut findings);
    Validation {
        metadata,
        redirects,
        findings: findings.into_vec(),
    }
}

/// Parses `text` as a JSON object (rule 29); `what` names it in the finding.
pub(crate) fn parse_object(
    text: &str,
    what: &str,
    findings: &mut FindingList,
) -> Option<Map<String, Value>> {
    if let Some(member) = super::json::first_duplicate_member(text) {
        findings.report(
            Code::DuplicateMember,
            &member,
            format!("{what} names `{member}` twice; each member must appear once"),
        );
        return None;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Some(object),
        Ok(_) => {
            findings.report(Code::NotObject, "", format!("{what} is not a JSON object"));
            None
        }
        Err(error) => {
            findings.report(
                Code::InvalidJson,
                "",
                format!("{what} is not valid JSON: {error}"),
            );
            None
        }
    }
}

/// A statement is echoed unchanged; here only its shape is checked (E11, E13). Whether it
/// is trusted is the verifier's business (`software_statement::verify`).
pub(crate) fn check_software_statement(metadata: &ClientMetadata, findings: &mut FindingList) {
    let Some(statement) = &metadata.software_statement else {
        return;
    };
    if let Err(problem) = software_statement::check_shape(statement) {
        findings.report(
            Code::SoftwareStatementMalformed,
            "software_statement",
            problem.to_string(),
        );
    }
}

/// Reads typed members out of the JSON object, reporting members of the wrong type.
struct Reader<'a> {
    object: &'a Map<String, Value>,
    findings: &'a mut FindingList,
}

impl Reader<'_> {
    fn string(&mut self, name: &str) -> Option<String> {
        match self.object.get(name)? {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            _ => {
                self.wrong_type(name, "a string");
                None
            }
        }
    }

    fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        let code = if name == "redirect_uris" {
            Code::RedirectUrisInvalid
        } else {
            Code::InvalidFieldType
        };
        match self.object.get(name)? {
            Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect();
                if strings.is_none() {
                    self.findings.report(
                        code,
                        name,
                        format!("`{name}` must be an array of strings"),
                    );
                }
                strings
            }
            Value::Null => None,
            _ => {
                self.findings
                    .report(code, name, format!("`{name}` must be an array of strings"));
                None
            }
        }
    }

    /// A string member where an empty string means "not sent" (rule 96): SDKs echo `""`
    /// for members they have no value for.
    fn optional(&mut self, name: &str) -> Option<String> {
        let text = self.string(name)?;
        if !text.is_empty() {
            return Some(text);
        }
        self.findings.report(
            Code::EmptyValue,
            name,
            format!("`{name}` is an empty string; read as not sent"),
        );
        None
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.object.get(name)? {
            Value::Bool(value) => Some(*value),
            Value::Null => None,
            _ => {
                self.wrong_type(name, "true or false");
                None
            }
        }
    }

    /// Rule 89: a whole number of seconds, not negative.
    fn seconds(&mut self, name: &str) -> Option<u64> {
        match self.object.get(name)? {
            Value::Number(number) => {
                let seconds = number.as_u64();
                if seconds.is_none() {
                    self.findings.report(
                        Code::DefaultMaxAgeInvalid,
                        name,
                        format!(
                            "`{name}` is a whole number of seconds, not negative: `{number}` is not"
                        ),
                    );
                }
                seconds
            }
            Value::Null => None,
            _ => {
                self.wrong_type(name, "a number of seconds");
                None
            }
        }
    }

    fn wrong_type(&mut self, name: &str, expected: &str) {
        self.findings.report(
            Code::InvalidFieldType,
            name,
            format!("`{name}` must be {expected}"),
        );
    }
}

/// Reads the RFC 7591 members of `object`, reporting members of the wrong type.
pub(crate) fn read_metadata(
    object: &Map<String, Value>,
    findings: &mut FindingList,
) -> ClientMetadata {
    let mut reader = Reader { object, findings };
    read_members(&mut reader)
}

fn read_members(reader: &mut Reader<'_>) -> ClientMetadata {
    let mut metadata = ClientMetadata {
        redirect_uris: reader.strings("redirect_uris").unwrap_or_default(),
        token_endpoint_auth_method: reader
            .string("token_endpoint_auth_method")
            .unwrap_or_default(),
        grant_types: reader.strings("grant_types").unwrap_or_default(),
        response_types: reader.strings("response_types").unwrap_or_default(),
        client_name: reader.string("client_name"),
        client_uri: reader.optional("client_uri"),
        logo_uri: reader.optional("logo_uri"),
        scope: reader.optional("scope"),
        contacts: reader.strings("contacts").unwrap_or_default(),
        tos_uri: reader.optional("tos_uri"),
        policy_uri: reader.optional("policy_uri"),
        jwks_uri: reader.optional("jwks_uri"),
        jwks: None,
        software_id: reader.optional("software_id"),
        software_version: reader.optional("software_version"),
        software_statement: reader.string("software_statement"),
        application_type: reader.optional("application_type"),
        post_logout_redirect_uris: reader
            .strings("post_logout_redirect_uris")
            .unwrap_or_default(),
        // A CIMD document member (SEP-3149); `cimd::document` reads it.
        token_endpoint_auth_methods_supported: Vec::new(),
        default_max_age: reader.seconds("default_max_age"),
        require_auth_time: reader.boolean("require_auth_time"),
        initiate_login_uri: reader.optional("initiate_login_uri"),
        sector_identifier_uri: reader.optional("sector_identifier_uri"),
        request_uris: reader.strings("request_uris").unwrap_or_default(),
        id_token_signed_response_alg: reader.string("id_token_signed_response_alg"),
        id_token_encrypted_response_alg: reader.string("id_token_encrypted_response_alg"),
        id_token_encrypted_response_enc: reader.string("id_token_encrypted_response_enc"),
        userinfo_signed_response_alg: reader.string("userinfo_signed_response_alg"),
        userinfo_encrypted_response_alg: reader.string("userinfo_encrypted_response_alg"),
        userinfo_encrypted_response_enc: reader.string("userinfo_encrypted_response_enc"),
        request_object_signing_alg: reader.string("request_object_signing_alg"),
        request_object_encryption_alg: reader.string("request_object_encryption_alg"),
        request_object_encryption_enc: reader.string("request_object_encryption_enc"),
        token_endpoint_auth_signing_alg: reader.string("token_endpoint_auth_signing_alg"),
        localized: Default::default(),
    };
    match reader.object.get("jwks") {
        None | Some(Value::Null) => {}
        Some(jwks @ Value::Object(_)) => metadata.jwks = Some(jwks.clone()),
        Some(_) => reader.findings.report(
            Code::JwksInvalid,
            "jwks",
            "`jwks` must be a JSON object holding a JWK Set",
        ),
    }
    let redirect_uris = reader.object.get("redirect_uris");
    if redirect_uris
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        reader.findings.report(
            Code::RedirectUrisInvalid,
            "redirect_uris",
            "`redirect_uris` is empty",
        );
    }
    for (name, value) in reader.object {
        let Some((base, _tag)) = name.split_once('#') else {
            continue;
        };
        if !LOCALIZABLE.contains(&base) {
            continue;
        }
        match value {
            Value::String(text) => {
                metadata.localized.insert(name.clone(), text.clone());
            }
            _ => reader.wrong_type(name, "a string"),
        }
    }
    metadata
}

pub(crate) fn check_redirect_uris(
    metadata: &ClientMetadata,
    findings: &mut FindingList,
) -> Vec<RedirectUri> {
    let mut redirects = Vec::new();
    for (index, raw) in metadata.redirect_uris.iter().enumerate() {
        let field = format!("redirect_uris[{index}]");
        let check = uri::check_redirect_uri(raw);
        for problem in check.problems {
            findings.report(problem.code, &field, problem.message);
        }
        redirects.extend(check.redirect);
    }
    redirects
}

/// Rule 43 for every display and key URI, language-tagged ones included, and rule 70's
/// review flag when they point at another host than the redirect URIs.
pub(crate) fn check_metadata_uris(
    metadata: &ClientMetadata,
    redirects: &[RedirectUri],
    addresses: &AddressRules,
    findings: &mut FindingList,
) {
    let redirect_hosts: Vec<&str> = redirects
        .iter()
        .filter(|redirect| redirect.kind == RedirectKind::Https)
        .map(|redirect| redirect.host.as_str())
        .collect();
    let mut uris: Vec<(&str, &str)> = [
        ("client_uri", &metadata.client_uri),
        ("logo_uri", &metadata.logo_uri),
        ("tos_uri", &metadata.tos_uri),
        ("policy_uri", &metadata.policy_uri),
        ("jwks_uri", &metadata.jwks_uri),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field, value.as_deref()?)))
    .collect();
    uris.extend(
        metadata
            .localized
            .iter()
            .filter(|(name, _)| !name.starts_with("client_name#"))
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    for (field, raw) in uris {
        let https_code = if field == "jwks_uri" {
            Code::JwksUriNotHttps
        } else {
            Code::UriNotHttps
        };
        let (url, problems) = uri::check_metadata_uri(raw, https_code);
        for problem in problems {
            findings.report(problem.code, field, problem.message);
        }
        if let Some(reason) = url.as_ref().and_then(|url| addresses.url_refusal(url)) {
            findings.report(
                Code::SpecialUseAddress,
                field,
                format!("`{raw}` names a special-use address ({reason}); the authorization server must never fetch it"),
            );
        }
        let host = url
            .as_ref()
            .and_then(|url| url.host_str())
            .unwrap_or_default();
        if field != "jwks_uri"
            && !host.is_empty()
            && !redirect_hosts.is_empty()
            && !redirect_hosts
                .iter()
                .any(|redirect| redirect.eq_ignore_ascii_case(host))
        {
            findings.report(
                Code::UriHostMismatch,
                field,
                format!("`{field}` is on `{host}`, which none of the redirect URIs use"),
            );
        }
    }
}

/// Members that name URIs an AS may fetch but that normalized metadata leaves out
/// (`sector_identifier_uri`, `initiate_login_uri`, `request_uris`): an AS that reads the
/// request body itself would fetch them, so none may name a special-use host (F-8;
/// Keycloak's CVE-2026-4366 and CVE-2026-1180).
pub(crate) fn check_fetchable_extras(
    object: &Map<String, Value>,
    addresses: &AddressRules,
    findings: &mut FindingList,
) {
    let mut uris: Vec<(String, &str)> = Vec::new();
    for name in ["sector_identifier_uri", "initiate_login_uri"] {
        if let Some(Value::String(raw)) = object.get(name) {
            uris.push((name.to_owned(), raw));
        }
    }
    if let Some(Value::Array(list)) = object.get("request_uris") {
        for (index, item) in list.iter().enumerate() {
            if let Value::String(raw) = item {
                uris.push((format!("request_uris[{index}]"), raw));
            }
        }
    }
    for (field, raw) in uris {
        let Ok(url) = url::Url::parse(raw) else {
            continue;
        };
        if let Some(reason) = addresses.url_refusal(&url) {
            findings.report(
                Code::SpecialUseAddress,
                &field,
                format!("`{raw}` names a special-use address ({reason}); the authorization server must never fetch it"),
            );
        }
    }
}

/// F-11: `client_name` (and its language-tagged variants) as a consent screen shows it —
/// bidirectional controls, control or invisible characters, a word of mixed scripts are
/// warnings, which policies see in `context.warnings`.
pub(crate) fn check_display_names(metadata: &ClientMetadata, findings: &mut FindingList) {
    let names = metadata
        .client_name
        .iter()
        .map(|name| ("client_name", name.as_str()))
        .chain(
            metadata
                .localized
                .iter()
                .filter(|(member, _)| member.starts_with("client_name#"))
                .map(|(member, name)| (member.as_str(), name.as_str())),
        );
    for (field, name) in names {
        let flags = super::names::flags(name);
        let shown = name.escape_default();
        for (present, code, what) in [
            (
                flags.bidi_control,
                Code::ClientNameBidiControl,
                "a bidirectional control character, which reorders what the consent screen shows",
            ),
            (
                flags.control,
                Code::ClientNameControlCharacter,
                "a control character",
            ),
            (
                flags.invisible,
                Code::ClientNameInvisibleCharacter,
                "an invisible character",
            ),
            (
                flags.mixed_scripts,
                Code::ClientNameMixedScripts,
                "a word that mixes look-alike scripts (Latin with Cyrillic, Greek or Armenian)",
            ),
        ] {
            if present {
                findings.report(code, field, format!("`{shown}` contains {what}"));
            }
        }
    }
}

/// RFC 7591 §2 defaults (rule 80).
pub(crate) fn apply_defaults(metadata: &mut ClientMetadata) {
    if metadata.token_endpoint_auth_method.is_empty() {
        metadata.token_endpoint_auth_method = "client_secret_basic".to_owned();
    }
    if metadata.grant_types.is_empty() {
        metadata.grant_types = vec!["authorization_code".to_owned()];
    }
    // RFC 7591's default `code` only makes sense for a client that uses the code grant; a
    // client_credentials-only client uses no response type.
    let uses_code_grant = metadata
        .grant_types
        .iter()
        .any(|g| g == "authorization_code");
    if metadata.response_types.is_empty() && uses_code_grant {
        metadata.response_types = vec!["code".to_owned()];
    }
}

pub(crate) fn check_auth_method(metadata: &ClientMetadata, findings: &mut FindingList) {
    let method = metadata.token_endpoint_auth_method.as_str();
    let absolute_uri = method.contains(':');
    if !KNOWN_AUTH_METHODS.contains(&method) && !absolute_uri {
        findings.report(
            Code::UnknownAuthMethod,
            "token_endpoint_auth_method",
            format!("`{method}` is not a known token endpoint authentication method"),
        );
    }
    if method == "private_key_jwt" && metadata.jwks.is_none() && metadata.jwks_uri.is_none() {
        findings.report(
            Code::NoKeyMaterial,
            "token_endpoint_auth_method",
            "`private_key_jwt` needs a key: send `jwks` or `jwks_uri`",
        );
    }
}

/// Rules 41 and 81, E5–E7: grant and response types must agree, redirect grants need
/// redirect URIs, public clients cannot use client credentials.
pub(crate) fn check_grants(metadata: &ClientMetadata, findings: &mut FindingList) {
    let grants = &metadata.grant_types;
    let responses = &metadata.response_types;
    let has_grant = |grant: &str| grants.iter().any(|g| g == grant);
    let has_response = |response: &str| responses.iter().any(|r| r == response);
    if has_grant("implicit") {
        findings.report(
            Code::UnsupportedGrantType,
            "grant_types",
            "the implicit grant is removed by OAuth 2.1",
        );
    }
    if has_grant("authorization_code") != has_response("code") {
        findings.report(
            Code::InconsistentGrantResponseTypes,
            "response_types",
            "`authorization_code` in `grant_types` and `code` in `response_types` go together",
        );
    }
    if has_response("token") && !has_grant("implicit") {
        findings.report(
            Code::InconsistentGrantResponseTypes,
            "response_types",
            "response type `token` needs the `implicit` grant",
        );
    }
    let redirect_grant = has_grant("authorization_code") || has_grant("implicit");
    let already_reported = findings.mentions("redirect_uris");
    if redirect_grant && metadata.redirect_uris.is_empty() && !already_reported {
        findings.report(
            Code::RedirectUrisMissing,
            "redirect_uris",
            "a client using the authorization code grant must register `redirect_uris`",
        );
    }
    if has_grant("client_credentials") && metadata.token_endpoint_auth_method == "none" {
        findings.report(
            Code::PublicClientCredentials,
            "grant_types",
            "a public client (`token_endpoint_auth_method` `none`) cannot use `client_credentials`",
        );
    }
}

/// Rules 34–36: one source of keys, a real JWK Set, public keys only.
pub(crate) fn check_keys(metadata: &ClientMetadata, findings: &mut FindingList) {
    if metadata.jwks.is_some() && metadata.jwks_uri.is_some() {
        findings.report(
            Code::JwksAndJwksUri,
            "jwks",
            "send `jwks` or `jwks_uri`, not both",
        );
    }
    let Some(jwks) = &metadata.jwks else {
        return;
    };
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        findings.report(Code::JwksInvalid, "jwks", "`jwks` must hold a `keys` array");
        return;
    };
    for (index, key) in keys.iter().enumerate() {
        let field = format!("jwks.keys[{index}]");
        let Some(key) = key
            .as_object()
            .filter(|key| key.get("kty").is_some_and(Value::is_string))
        else {
            findings.report(
                Code::JwksInvalid,
                &field,
                "each key must be a JSON object with a `kty`",
            );
            continue;
        };
        if key.get("kty").and_then(Value::as_str) == Some("oct") || key.contains_key("k") {
            findings.report(
                Code::SymmetricKeyMaterial,
                &field,
                "symmetric key material must never be registered",
            );
        } else if let Some(member) = PRIVATE_JWK_MEMBERS.iter().find(|m| key.contains_key(**m)) {
            findings.report(
                Code::PrivateKeyMaterial,
                &field,
                format!("the key carries the private member `{member}`: register public keys only"),
            );
        }
    }
}
