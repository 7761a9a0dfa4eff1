//! Typed findings: what a registration did wrong, or nearly wrong.
//!
//! A finding is a result, not a failure: validation always completes and returns every
//! finding it has. Each [`Code`] is stable (it reaches operators' logs and Cedar policies as
//! a string) and names the rule of the registration rules reference it comes from.

use std::fmt;

/// How serious a finding is under the active profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The registration is denied before any policy runs.
    Error,
    /// Reported, and visible to policies as `context.warnings`.
    Warning,
}

macro_rules! codes {
    ($($variant:ident => $text:literal, rule $rule:literal;)*) => {
        /// Stable finding codes. The text is the wire form; the rule is the number of a row
        /// of `docs/registration-rules.md` (empty when the code is clientgate's own).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text),* }
            }

            pub fn rule(self) -> &'static str {
                match self { $(Code::$variant => $rule),* }
            }

            pub fn from_wire(text: &str) -> Option<Code> {
                match text { $($text => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    InvalidJson => "invalid_json", rule "29";
    NotObject => "not_object", rule "29";
    DuplicateMember => "duplicate_member", rule "29";
    ClientNameBidiControl => "client_name_bidi_control", rule "31";
    ClientNameControlCharacter => "client_name_control_character", rule "31";
    ClientNameInvisibleCharacter => "client_name_invisible_character", rule "31";
    ClientNameMixedScripts => "client_name_mixed_scripts", rule "31";
    ClientNameConfusable => "client_name_confusable", rule "31";
    InvalidFieldType => "invalid_field_type", rule "78";
    RedirectUrisMissing => "redirect_uris_missing", rule "79";
    RedirectUrisInvalid => "redirect_uris_invalid", rule "45";
    RedirectUriMalformed => "redirect_uri_malformed", rule "11";
    RedirectUriNotAbsolute => "redirect_uri_not_absolute", rule "49";
    RedirectUriFragment => "redirect_uri_fragment", rule "49";
    InsecureRedirectUri => "insecure_redirect_uri", rule "50";
    WildcardRedirectUri => "wildcard_redirect_uri", rule "56";
    DangerousScheme => "dangerous_scheme", rule "52";
    PrivateUseScheme => "private_use_scheme", rule "51";
    PrivateUseSchemeNotReverseDns => "private_use_scheme_not_reverse_dns", rule "52";
    LocalhostRedirectUri => "localhost_redirect_uri", rule "48";
    UriNotAbsolute => "uri_not_absolute", rule "43";
    UriNotHttps => "uri_not_https", rule "43";
    UriUserinfo => "uri_userinfo", rule "43";
    UriFragment => "uri_fragment", rule "43";
    JwksUriNotHttps => "jwks_uri_not_https", rule "43";
    UriHostMismatch => "uri_host_mismatch", rule "70";
    JwksAndJwksUri => "jwks_and_jwks_uri", rule "35";
    JwksInvalid => "jwks_invalid", rule "36";
    PrivateKeyMaterial => "private_key_material", rule "34";
    SymmetricKeyMaterial => "symmetric_key_material", rule "34";
    NoKeyMaterial => "no_key_material", rule "37";
    InconsistentGrantResponseTypes => "inconsistent_grant_response_types", rule "81";
    UnsupportedGrantType => "unsupported_grant_type", rule "41";
    PublicClientCredentials => "public_client_credentials", rule "78";
    UnknownAuthMethod => "unknown_auth_method", rule "80";
    ClientIdIgnored => "client_id_ignored", rule "10";
    SoftwareStatementMalformed => "software_statement_malformed", rule "82";
    SoftwareStatementUnverified => "software_statement_unverified", rule "82";
    SoftwareStatementUnapproved => "software_statement_unapproved", rule "84";
    SoftwareStatementInvalid => "software_statement_invalid", rule "82";
    PolicyEvaluationError => "policy_evaluation_error", rule "";
    ChallengeNotAttestable => "challenge_not_attestable", rule "";
    StepUpTicketUnknown => "step_up_ticket_unknown", rule "";
    StepUpTicketMismatch => "step_up_ticket_mismatch", rule "";
    StepUpTicketExpired => "step_up_ticket_expired", rule "";
    StepUpTicketUsed => "step_up_ticket_used", rule "";
    FindingsTruncated => "findings_truncated", rule "";
    StepUpDenied => "step_up_denied", rule "";
    NotHttps => "not_https", rule "1";
    NoPath => "no_path", rule "2";
    RootPath => "root_path", rule "2";
    DotSegment => "dot_segment", rule "3";
    Fragment => "fragment", rule "4";
    Userinfo => "userinfo", rule "5";
    QueryDiscouraged => "query_discouraged", rule "6";
    NonCanonical => "non_canonical", rule "9";
    InvalidCharacters => "invalid_characters", rule "11";
    NoAuthority => "no_authority", rule "11";
    InvalidPort => "invalid_port", rule "11";
    BadPercentEncoding => "bad_percent_encoding", rule "11";
    TooLong => "too_long", rule "12";
    SpecialUseAddress => "special_use_address", rule "17";
    ClientIdMissing => "client_id_missing", rule "30";
    ClientIdMismatch => "client_id_mismatch", rule "30";
    ClientNameMissing => "client_name_missing", rule "31";
    SharedSecretAuthMethod => "shared_secret_auth_method", rule "32";
    ClientSecretPresent => "client_secret_present", rule "33";
    GrantTypeFiltered => "grant_type_filtered", rule "41";
    AuthMethodDefaulted => "auth_method_defaulted", rule "42";
    RedirectUriMismatch => "redirect_uri_mismatch", rule "46";
    RedirectUriRequired => "redirect_uri_required", rule "54";
    RedirectNotFollowed => "redirect_not_followed", rule "16";
    StatusNot200 => "status_not_200", rule "15";
    Unexpected304 => "unexpected_304", rule "15";
    FetchFailed => "fetch_failed", rule "26";
    TooLarge => "too_large", rule "20";
    BadMediaType => "bad_media_type", rule "25";
    Timeout => "timeout", rule "23";
    FetcherBusy => "fetcher_busy", rule "23";
    PortNotAllowed => "port_not_allowed", rule "17";
    ApplicationTypeMissing => "application_type_missing", rule "87";
    ApplicationTypeInvalid => "application_type_invalid", rule "88";
    ApplicationTypeMismatch => "application_type_mismatch", rule "88";
    DefaultMaxAgeInvalid => "default_max_age_invalid", rule "89";
    HttpsRequired => "https_required", rule "91";
    EncryptionAlgMissing => "encryption_alg_missing", rule "92";
    UnsignedIdToken => "unsigned_id_token", rule "93";
    AuthSigningAlgMismatch => "auth_signing_alg_mismatch", rule "94";
    ContactNotEmail => "contact_not_email", rule "95";
    ClientNameEmpty => "client_name_empty", rule "96";
    EmptyValue => "empty_value", rule "96";
    UnknownAlgorithm => "unknown_algorithm", rule "97";
    GrantTypeUnsupported => "grant_type_unsupported", rule "98";
    NoSupportedGrantType => "no_supported_grant_type", rule "98";
    ResponseTypeUnsupported => "response_type_unsupported", rule "98";
    ScopeUnsupported => "scope_unsupported", rule "98";
    AuthMethodUnsupported => "auth_method_unsupported", rule "98";
    DocumentRedirectUrisChanged => "document_redirect_uris_changed", rule "100";
    DocumentKeysChanged => "document_keys_changed", rule "100";
    DocumentChanged => "document_changed", rule "100";
    PinnedDocumentMismatch => "pinned_document_mismatch", rule "";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Code::from_wire(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown finding code `{text}`")))
    }
}

/// One finding: a stable code, its severity under the active profile, the metadata member
/// concerned (`redirect_uris[1]`, or empty), and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub field: String,
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Findings one decision carries at most (F-3); the rest are counted in one more.
pub const MAX_FINDINGS: usize = 100;
/// The longest finding message kept, in characters; a longer one ends in `…`. Messages
/// quote what the caller sent, so this bounds what a decision echoes.
pub const MAX_MESSAGE_CHARS: usize = 300;
/// The longest `field` kept, in characters.
const MAX_FIELD_CHARS: usize = 120;

/// `findings` bounded for the answer and the decision log: at most [`MAX_FINDINGS`] (the
/// first ones, in order), then one `findings_truncated` finding with the severity of the
/// worst left out that says how many were; every message and field cut to its bound. A
/// bounded input gives a bounded output however many rules it breaks.
pub fn bounded(findings: Vec<Finding>) -> Vec<Finding> {
    let total = findings.len();
    let mut findings = findings.into_iter();
    let mut kept: Vec<Finding> = findings
        .by_ref()
        .take(MAX_FINDINGS)
        .map(|finding| Finding {
            field: cut(finding.field, MAX_FIELD_CHARS),
            message: cut(finding.message, MAX_MESSAGE_CHARS),
            ..finding
        })
        .collect();
    let left_out: Vec<Finding> = findings.collect();
    if !left_out.is_empty() {
        let errors = left_out.iter().filter(|finding| finding.is_error()).count();
        kept.push(Finding {
            code: Code::FindingsTruncated,
            severity: if errors > 0 {
                Severity::Error
            } else {
                Severity::Warning
            },
            field: String::new(),
            message: format!(
                "and {} more findings ({errors} of them errors) not shown: {total} in all",
                left_out.len()
            ),
        });
    }
    kept
}

/// `text` cut to `max` characters, ending in `…` when it was longer.
pub fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Collects findings at the severity the profile gives them; a rule the profile turns off
/// leaves no finding.
#[derive(Debug)]
pub struct FindingList {
    profile: super::Profile,
    list: Vec<Finding>,
}

impl FindingList {
    pub fn new(profile: super::Profile) -> FindingList {
        FindingList {
            profile,
            list: Vec::new(),
        }
    }

    pub fn report(&mut self, code: Code, field: &str, message: impl Into<String>) {
        if let Some(severity) = super::profile::severity(code, self.profile) {
            self.list.push(Finding {
                code,
                severity,
                field: field.to_owned(),
                message: message.into(),
            });
        }
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Finding::is_error)
    }

    pub fn mentions(&self, field: &str) -> bool {
        self.list.iter().any(|finding| finding.field == field)
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.list
    }
}
