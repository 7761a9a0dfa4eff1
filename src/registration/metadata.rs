//! Normalized client metadata: what the authorization server should register.
//!
//! Only RFC 7591 §2 members and the OpenID Connect Dynamic Client Registration 1.0 §2
//! members (among them `application_type`, which MCP 2026-07-28 asks DCR clients to send)
//! survive normalization; unknown members are dropped (rule 78, E10), and
//! language-tagged human-readable members such as `client_name#ja-Jpan-JP` are kept (E16).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Members that RFC 7591 §2.2 lets a client send in several languages.
pub const LOCALIZABLE: &[&str] = &[
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
];

/// The validated metadata, with RFC 7591 defaults applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub software_version: Option<String>,
    /// Echoed unchanged (RFC 7591 §3.2.1).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub software_statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub application_type: Option<String>,
    /// OpenID Connect registration members (OIDC Registration §2), validated in
    /// `registration::oidc`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A CIMD document's methods in its order of preference (SEP-3149), from which
    /// `token_endpoint_auth_method` is chosen (`registration::capabilities`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub default_max_age: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub require_auth_time: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub initiate_login_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sector_identifier_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub request_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token_encrypted_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_token_encrypted_response_enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userinfo_encrypted_response_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userinfo_encrypted_response_enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_object_signing_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_object_encryption_alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_object_encryption_enc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_endpoint_auth_signing_alg: Option<String>,
    /// Language-tagged members, keyed by their full name (`client_name#fr`).
    #[serde(flatten)]
    pub localized: BTreeMap<String, String>,
}

impl ClientMetadata {
    /// The scopes of the space-separated `scope` member.
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
