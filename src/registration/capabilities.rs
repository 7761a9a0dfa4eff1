//! What the authorization server supports (RFC 8414 §2), per tenant, and what a
//! registration may ask of it (registration rules 98 and 99): grant types and scopes it
//! does not support are filtered with a warning where real clients ask for them anyway
//! (VS Code's device grant, Gemini CLI's every advertised scope), response types and
//! authentication methods it does not support are errors; and a CIMD document that offers
//! several methods (`token_endpoint_auth_methods_supported`, SEP-3149) keeps the one it
//! names when the AS supports it, else gets the first offered one the AS supports. Pure: the capabilities come from the tenant's `authorization_server`
//! attribute in `policies/entities.json`.

use super::dcr::Validation;
use super::findings::{Code, FindingList};
use super::profile::{self, Level, Profile};

/// RFC 8414 members that say what the AS supports; a list that is absent is not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub grant_types_supported: Option<Vec<String>>,
    pub response_types_supported: Option<Vec<String>>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub scopes_supported: Option<Vec<String>>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

impl Capabilities {
    /// Reads the RFC 8414 members of `value` (the tenant's `authorization_server` record,
    /// or an AS metadata document); members that are not arrays of strings are left out.
    pub fn from_json(value: &serde_json::Value) -> Capabilities {
        let list = |name: &str| -> Option<Vec<String>> {
            value.get(name)?.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
        };
        Capabilities {
            grant_types_supported: list("grant_types_supported"),
            response_types_supported: list("response_types_supported"),
            token_endpoint_auth_methods_supported: list("token_endpoint_auth_methods_supported"),
            scopes_supported: list("scopes_supported"),
            code_challenge_methods_supported: list("code_challenge_methods_supported"),
        }
    }
}

/// Methods a CIMD client can use: a public document cannot hold a shared secret (rule 32).
const SHARED_SECRET_METHODS: &[&str] = &[
    "client_secret_post",
    "client_secret_basic",
    "client_secret_jwt",
];

/// The method a CIMD document that offers `offered` (in its order of preference) gets: the
/// first one without a shared secret that the AS supports (any, when `supported` is
/// `None`).
pub fn choose_auth_method<'a>(
    offered: &'a [String],
    supported: Option<&[String]>,
) -> Option<&'a str> {
    offered
        .iter()
        .map(String::as_str)
        .filter(|method| !SHARED_SECRET_METHODS.contains(method))
        .find(|method| supported.is_none_or(|supported| supported.iter().any(|s| s == method)))
}

/// Holds `validation`'s normalized metadata to what the AS supports, adding findings at the
/// level `profile` gives them. A value whose finding is only a warning is filtered out.
pub fn apply(validation: &mut Validation, capabilities: &Capabilities, profile: Profile) {
    if validation.has_errors() && validation.metadata == Default::default() {
        return;
    }
    let mut findings = FindingList::new(profile);
    let metadata = &mut validation.metadata;
    let filters = |code: Code| profile::level(code, profile) != Level::Error;

    if let Some(supported) = &capabilities.token_endpoint_auth_methods_supported
        && !supported.contains(&metadata.token_endpoint_auth_method)
    {
        // The method named (or chosen at validation) stays when the AS supports it; else a
        // document that offers others gets the first of them the AS supports.
        let offered = &metadata.token_endpoint_auth_methods_supported;
        match choose_auth_method(offered, Some(supported)) {
            Some(method) => {
                metadata.token_endpoint_auth_method = method.to_owned();
                // Held to the method's own rules again: `private_key_jwt` needs keys.
                super::dcr::check_auth_method(metadata, &mut findings);
            }
            None => findings.report(
                Code::AuthMethodUnsupported,
                "token_endpoint_auth_method",
                format!(
                    "the authorization server does not support `{}` (it supports {})",
                    metadata.token_endpoint_auth_method,
                    supported.join(", ")
                ),
            ),
        }
    }

    if let Some(supported) = &capabilities.response_types_supported {
        for response_type in &metadata.response_types {
            if !supported.contains(response_type) {
                findings.report(
                    Code::ResponseTypeUnsupported,
                    "response_types",
                    format!("the authorization server does not support the response type `{response_type}`"),
                );
            }
        }
    }

    if let Some(supported) = &capabilities.grant_types_supported {
        let (kept, unsupported): (Vec<String>, Vec<String>) = metadata
            .grant_types
            .iter()
            .cloned()
            .partition(|grant| supported.contains(grant));
        for grant in &unsupported {
            findings.report(
                Code::GrantTypeUnsupported,
                "grant_types",
                format!("the authorization server does not support the grant type `{grant}`; it is not registered"),
            );
        }
        if !unsupported.is_empty() && filters(Code::GrantTypeUnsupported) {
            if kept.is_empty() {
                findings.report(
                    Code::NoSupportedGrantType,
                    "grant_types",
                    "none of the grant types asked for is one the authorization server supports",
                );
            }
            let had_code_grant = metadata
                .grant_types
                .iter()
                .any(|g| g == "authorization_code");
            metadata.grant_types = kept;
            let has_code_grant = metadata
                .grant_types
                .iter()
                .any(|g| g == "authorization_code");
            if had_code_grant
                && !has_code_grant
                && metadata.response_types.iter().any(|r| r == "code")
            {
                findings.report(
                    Code::InconsistentGrantResponseTypes,
                    "grant_types",
                    "without `authorization_code`, which the authorization server does not support, the response type `code` cannot be used",
                );
            }
        }
    }

    if let Some(supported) = &capabilities.scopes_supported {
        let scopes = metadata.scopes();
        let (kept, unsupported): (Vec<String>, Vec<String>) = scopes
            .into_iter()
            .partition(|scope| supported.contains(scope));
        for scope in &unsupported {
            findings.report(
                Code::ScopeUnsupported,
                "scope",
                format!("the authorization server does not support the scope `{scope}`; it is not registered"),
            );
        }
        if !unsupported.is_empty() && filters(Code::ScopeUnsupported) {
            metadata.scope = (!kept.is_empty()).then(|| kept.join(" "));
        }
    }
    validation.findings.extend(findings.into_vec());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::validate_dcr;

    fn capabilities() -> Capabilities {
        Capabilities::from_json(&serde_json::json!({
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "scopes_supported": ["openid", "read", "offline_access"],
            "code_challenge_methods_supported": ["S256"]
        }))
    }

    fn applied(body: &str, profile: Profile) -> Validation {
        let mut validation = validate_dcr(body, profile);
        validation
            .findings
            .retain(|finding| finding.code != Code::ApplicationTypeMissing);
        apply(&mut validation, &capabilities(), profile);
        validation
    }

    fn codes(validation: &Validation) -> Vec<(&'static str, bool)> {
        validation
            .findings
            .iter()
            .map(|finding| (finding.code.as_str(), finding.is_error()))
            .collect()
    }

    #[test]
    fn rule_98_a_grant_type_the_as_does_not_support_is_filtered_with_a_warning_in_mcp() {
        // VS Code asks for the device grant.
        let validation = applied(
            r#"{"redirect_uris":["http://127.0.0.1/"],"token_endpoint_auth_method":"none",
                "grant_types":["authorization_code","refresh_token","urn:ietf:params:oauth:grant-type:device_code"]}"#,
            Profile::Mcp,
        );
        assert_eq!(codes(&validation), [("grant_type_unsupported", false)]);
        assert_eq!(
            validation.metadata.grant_types,
            ["authorization_code", "refresh_token"]
        );
    }

    #[test]
    fn rule_98_a_grant_type_the_as_does_not_support_is_refused_by_strict() {
        let validation = applied(
            r#"{"redirect_uris":["http://127.0.0.1/"],"application_type":"native","token_endpoint_auth_method":"none",
                "grant_types":["authorization_code","client_credentials"]}"#,
            Profile::Strict,
        );
        assert!(
            codes(&validation).contains(&("grant_type_unsupported", true)),
            "{:?}",
            codes(&validation)
        );
    }

    #[test]
    fn rule_98_nothing_left_after_filtering_is_refused() {
        let validation = applied(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"client_secret_basic",
                "grant_types":["client_credentials"],"response_types":[]}"#,
            Profile::Mcp,
        );
        assert!(
            codes(&validation).contains(&("no_supported_grant_type", true)),
            "{:?}",
            codes(&validation)
        );
    }

    #[test]
    fn rule_98_scopes_the_as_never_advertised_are_filtered_with_a_warning_in_mcp() {
        // Gemini CLI asks for every scope it saw, `admin` included.
        let validation = applied(
            r#"{"redirect_uris":["http://127.0.0.1/"],"token_endpoint_auth_method":"none","scope":"read admin offline_access"}"#,
            Profile::Mcp,
        );
        assert_eq!(codes(&validation), [("scope_unsupported", false)]);
        assert_eq!(
            validation.metadata.scope.as_deref(),
            Some("read offline_access")
        );
    }

    #[test]
    fn rule_98_an_auth_method_the_as_does_not_support_is_refused() {
        let validation = applied(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            Profile::Mcp,
        );
        assert_eq!(codes(&validation), [("auth_method_unsupported", true)]);
    }

    #[test]
    fn rule_98_a_response_type_the_as_does_not_support_is_refused() {
        let validation = applied(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"none",
                "grant_types":["authorization_code","implicit"],"response_types":["code","token"]}"#,
            Profile::Interop,
        );
        assert!(
            codes(&validation)
                .iter()
                .any(|(code, _)| *code == "response_type_unsupported"),
            "{:?}",
            codes(&validation)
        );
    }

    #[test]
    fn rule_98_what_the_as_supports_passes_untouched() {
        let body = r#"{"redirect_uris":["http://127.0.0.1/"],"token_endpoint_auth_method":"none",
            "grant_types":["authorization_code","refresh_token"],"scope":"openid read"}"#;
        let validation = applied(body, Profile::Mcp);
        assert_eq!(codes(&validation), []);
        assert_eq!(validation.metadata.scope.as_deref(), Some("openid read"));
    }

    #[test]
    fn rule_99_a_method_the_document_names_stays_when_the_as_supports_it() {
        let mut validation = validate_dcr(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt",
                "jwks_uri":"https://c.example/jwks"}"#,
            Profile::Mcp,
        );
        validation.metadata.token_endpoint_auth_methods_supported =
            vec!["none".to_owned(), "private_key_jwt".to_owned()];
        apply(&mut validation, &capabilities(), Profile::Mcp);
        assert_eq!(
            validation.metadata.token_endpoint_auth_method,
            "private_key_jwt"
        );
    }

    #[test]
    fn rule_99_a_method_chosen_for_the_as_is_held_to_its_own_rules() {
        // Offered none and private_key_jwt, no keys, and the AS supports only keys.
        let mut validation = validate_dcr(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"none"}"#,
            Profile::Mcp,
        );
        validation.metadata.token_endpoint_auth_methods_supported =
            vec!["none".to_owned(), "private_key_jwt".to_owned()];
        let only_keys = Capabilities {
            token_endpoint_auth_methods_supported: Some(vec!["private_key_jwt".to_owned()]),
            ..Capabilities::default()
        };
        apply(&mut validation, &only_keys, Profile::Mcp);
        assert_eq!(
            validation.metadata.token_endpoint_auth_method,
            "private_key_jwt"
        );
        assert!(
            codes(&validation).contains(&("no_key_material", true)),
            "{:?}",
            codes(&validation)
        );
    }

    #[test]
    fn rule_98_filtering_out_the_code_grant_leaves_no_code_response_type_unchecked() {
        let mut validation = validate_dcr(
            r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"none",
                "grant_types":["authorization_code","refresh_token"]}"#,
            Profile::Mcp,
        );
        let refresh_only = Capabilities {
            grant_types_supported: Some(vec!["refresh_token".to_owned()]),
            ..Capabilities::default()
        };
        apply(&mut validation, &refresh_only, Profile::Mcp);
        assert!(
            codes(&validation).contains(&("inconsistent_grant_response_types", true)),
            "{:?}",
            codes(&validation)
        );
    }

    #[test]
    fn rule_99_a_document_offering_several_methods_gets_the_first_the_as_supports() {
        let offered = ["client_secret_basic", "private_key_jwt", "none"].map(str::to_owned);
        let supported = ["none", "private_key_jwt"].map(str::to_owned);
        assert_eq!(
            choose_auth_method(&offered, Some(&supported)),
            Some("private_key_jwt"),
            "a shared-secret method is never chosen for a document, and the document's order wins"
        );
        assert_eq!(
            choose_auth_method(&offered, Some(&["none".to_owned()])),
            Some("none")
        );
        assert_eq!(
            choose_auth_method(&offered, Some(&["client_secret_basic".to_owned()])),
            None
        );
        assert_eq!(choose_auth_method(&offered, None), Some("private_key_jwt"));
    }
}
