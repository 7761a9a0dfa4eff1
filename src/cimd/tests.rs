//! Document vectors C1–C36 of the registration rules, run against the baseline document D₀
//! with one change each, by one `check` function.

use serde_json::{Value, json};

use super::document::{DEFAULT_SUPPORTED_GRANT_TYPES, DocumentRules, validate_document};
use crate::registration::{Profile, Severity};

const U0: &str = "https://app.example.com/oauth/client.json";

fn d0() -> Value {
    json!({
        "client_id": U0,
        "client_name": "Example",
        "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    })
}

fn rules(profile: Profile) -> DocumentRules {
    DocumentRules {
        profile,
        supported_grant_types: DEFAULT_SUPPORTED_GRANT_TYPES
            .iter()
            .map(|g| g.to_string())
            .collect(),
        addresses: crate::address::AddressRules::default(),
    }
}

enum Expect {
    Accept,
    Warn(&'static str),
    Reject(&'static str),
}
use Expect::{Accept, Reject, Warn};

/// D₀ with `changes` merged in (a `null` removes the member).
fn document(changes: Value) -> Vec<u8> {
    let mut document = d0();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            document.as_object_mut().unwrap().remove(key);
        } else {
            document[key] = value.clone();
        }
    }
    serde_json::to_vec(&document).unwrap()
}

fn check(name: &str, body: &[u8], expect: Expect) -> Option<String> {
    let validation = validate_document(body, U0, &rules(Profile::Mcp));
    let codes = |severity: Severity| -> Vec<&str> {
        validation
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| f.code.as_str())
            .collect()
    };
    let (errors, warnings) = (codes(Severity::Error), codes(Severity::Warning));
    let ok = match expect {
        Accept => validation.findings.is_empty(),
        Warn(code) => errors.is_empty() && warnings.contains(&code),
        Reject(code) => errors.contains(&code),
    };
    (!ok).then(|| format!("{name}: errors {errors:?}, warnings {warnings:?}"))
}

#[test]
fn document_vectors() {
    let private_rsa = json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]});
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("c1_baseline", document(json!({})), Accept),
        (
            "c2_no_client_id",
            document(json!({"client_id": null})),
            Reject("client_id_missing"),
        ),
        (
            "c3_trailing_slash",
            document(json!({"client_id": format!("{U0}/")})),
            Reject("client_id_mismatch"),
        ),
        (
            "c4_default_port",
            document(json!({"client_id": "https://app.example.com:443/oauth/client.json"})),
            Reject("client_id_mismatch"),
        ),
        (
            "c5_impersonation",
            document(json!({"client_id": "https://claude.ai/oauth/claude-code-client-metadata"})),
            Reject("client_id_mismatch"),
        ),
        (
            "c6_client_id_number",
            document(json!({"client_id": 7})),
            Reject("client_id_mismatch"),
        ),
        (
            "c6_client_id_array",
            document(json!({"client_id": [U0]})),
            Reject("client_id_mismatch"),
        ),
        (
            "c7_client_secret_basic",
            document(json!({"token_endpoint_auth_method": "client_secret_basic"})),
            Reject("shared_secret_auth_method"),
        ),
        (
            "c7_client_secret_post",
            document(json!({"token_endpoint_auth_method": "client_secret_post"})),
            Reject("shared_secret_auth_method"),
        ),
        (
            "c7_client_secret_jwt",
            document(json!({"token_endpoint_auth_method": "client_secret_jwt"})),
            Reject("shared_secret_auth_method"),
        ),
        (
            "c8_client_secret",
            document(json!({"client_secret": "s3cr3t"})),
            Reject("client_secret_present"),
        ),
        (
            "c9_client_secret_expires_at",
            document(json!({"client_secret_expires_at": 0})),
            Reject("client_secret_present"),
        ),
        (
            "c10_no_auth_method_is_none",
            document(json!({"token_endpoint_auth_method": null})),
            Warn("auth_method_defaulted"),
        ),
        (
            "c11_private_key_jwt_with_jwks_uri",
            document(
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://app.example.com/jwks.json"}),
            ),
            Accept,
        ),
        (
            "c12_private_key_jwt_without_keys",
            document(json!({"token_endpoint_auth_method": "private_key_jwt"})),
            Reject("no_key_material"),
        ),
        (
            "c13_jwks_and_jwks_uri",
            document(
                json!({"jwks": {"keys": []}, "jwks_uri": "https://app.example.com/jwks.json"}),
            ),
            Reject("jwks_and_jwks_uri"),
        ),
        (
            "c14_private_rsa_key",
            document(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": private_rsa})),
            Reject("private_key_material"),
        ),
        (
            "c15_symmetric_key",
            document(json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}})),
            Reject("symmetric_key_material"),
        ),
        (
            "c16_http_jwks_uri",
            document(
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://app.example.com/jwks"}),
            ),
            Reject("jwks_uri_not_https"),
        ),
        (
            "c16_jwks_uri_on_a_private_address",
            document(
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://10.0.0.8/jwks"}),
            ),
            Reject("special_use_address"),
        ),
        (
            "c17_no_redirect_uris",
            document(json!({"redirect_uris": null})),
            Reject("redirect_uris_missing"),
        ),
        (
            "c18_empty_redirect_uris",
            document(json!({"redirect_uris": []})),
            Reject("redirect_uris_invalid"),
        ),
        (
            "c18_redirect_uris_string",
            document(json!({"redirect_uris": "https://app.example.com/cb"})),
            Reject("redirect_uris_invalid"),
        ),
        (
            "c19_fragment",
            document(json!({"redirect_uris": ["https://app.example.com/cb#x"]})),
            Reject("redirect_uri_fragment"),
        ),
        (
            "c20_relative",
            document(json!({"redirect_uris": ["/callback"]})),
            Reject("redirect_uri_not_absolute"),
        ),
        (
            "c21_javascript",
            document(json!({"redirect_uris": ["javascript:alert(1)"]})),
            Reject("dangerous_scheme"),
        ),
        (
            "c21_data",
            document(json!({"redirect_uris": ["data:text/html,x"]})),
            Reject("dangerous_scheme"),
        ),
        (
            "c21_file",
            document(json!({"redirect_uris": ["file:///etc/passwd"]})),
            Reject("dangerous_scheme"),
        ),
        (
            "c22_http_remote",
            document(json!({"redirect_uris": ["http://evil.example/cb"]})),
            Reject("insecure_redirect_uri"),
        ),
        (
            "c23_scheme_without_dot",
            document(json!({"redirect_uris": ["myapp://callback"]})),
            Warn("private_use_scheme_not_reverse_dns"),
        ),
        (
            "c24_reverse_dns_scheme",
            document(json!({"redirect_uris": ["com.example.app:/oauth2redirect"]})),
            Warn("private_use_scheme"),
        ),
        (
            "c25_device_code_filtered",
            document(
                json!({"grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]}),
            ),
            Warn("grant_type_filtered"),
        ),
        (
            "c26_jwt_bearer_filtered",
            document(
                json!({"grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]}),
            ),
            Warn("grant_type_filtered"),
        ),
        (
            "c25_nothing_usable_left",
            document(json!({"grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]})),
            Reject("inconsistent_grant_response_types"),
        ),
        (
            "c27_code_grant_token_response",
            document(json!({"grant_types": ["authorization_code"], "response_types": ["token"]})),
            Reject("inconsistent_grant_response_types"),
        ),
        (
            "c28_implicit",
            document(json!({"grant_types": ["implicit"], "response_types": ["token"]})),
            Reject("unsupported_grant_type"),
        ),
        (
            "c29_no_client_name",
            document(json!({"client_name": null})),
            Reject("client_name_missing"),
        ),
        (
            "c30_borrowed_name",
            document(json!({"client_name": "ChatGPT"})),
            Accept,
        ),
        (
            "c31_logo_on_a_private_address",
            document(json!({"logo_uri": "http://10.0.0.1/logo.png"})),
            Reject("special_use_address"),
        ),
        (
            "c32_unknown_members",
            document(json!({"foo": 1, "token_endpoint_auth_methods_supported": ["none"]})),
            Accept,
        ),
        (
            "c33_software_statement",
            document(
                json!({"software_statement": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln"}),
            ),
            Warn("software_statement_unverified"),
        ),
        (
            "c34_native_with_https_redirect",
            document(
                json!({"application_type": "native", "redirect_uris": ["https://vscode.dev/redirect"]}),
            ),
            Warn("application_type_mismatch"),
        ),
        (
            "c35_wildcard_port",
            document(json!({"redirect_uris": ["http://localhost:*/callback"]})),
            Reject("wildcard_redirect_uri"),
        ),
        ("b22_json_array", b"[1,2]".to_vec(), Reject("not_object")),
        ("b22_json_string", b"\"str\"".to_vec(), Reject("not_object")),
        ("b23_not_json", b"<html>".to_vec(), Reject("invalid_json")),
        (
            "b23_not_utf8",
            vec![b'{', 0xff, 0xfe, b'}'],
            Reject("invalid_json"),
        ),
    ];
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, body, expect)| check(name, &body, expect))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn c10_a_missing_method_is_registered_as_none() {
    let validation = validate_document(
        &document(json!({"token_endpoint_auth_method": null})),
        U0,
        &rules(Profile::Mcp),
    );
    assert_eq!(validation.metadata.token_endpoint_auth_method, "none");
}

#[test]
fn c25_the_filtered_grants_are_what_gets_registered() {
    let body = document(
        json!({"grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]}),
    );
    let validation = validate_document(&body, U0, &rules(Profile::Mcp));
    assert_eq!(
        validation.metadata.grant_types,
        vec!["authorization_code", "refresh_token"]
    );
}

#[test]
fn c29_interop_accepts_a_document_without_client_name() {
    let validation = validate_document(
        &document(json!({"client_name": null})),
        U0,
        &rules(Profile::Interop),
    );
    assert!(!validation.has_errors(), "{:?}", validation.findings);
}

#[test]
fn every_real_client_document_is_valid_under_mcp() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-cimd");
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let client_id: Value = serde_json::from_slice(&body).unwrap();
        let client_id = client_id["client_id"].as_str().unwrap();
        let validation = validate_document(&body, client_id, &rules(Profile::Mcp));
        assert!(
            !validation.has_errors(),
            "{}: {:?}",
            path.display(),
            validation.findings
        );
    }
}

/// F-8: every URI of the document an AS may fetch later, language-tagged ones and those
/// normalized metadata leaves out included.
#[test]
fn no_uri_in_a_document_may_name_a_special_use_host() {
    for (member, value) in [
        ("logo_uri#fr", json!("https://169.254.169.254/x")),
        ("tos_uri", json!("https://[::ffff:10.0.0.1]/tos")),
        ("jwks_uri", json!("https://localhost/jwks.json")),
        (
            "sector_identifier_uri",
            json!("https://10.0.0.5/sector.json"),
        ),
        ("initiate_login_uri", json!("https://127.0.0.1/login")),
        (
            "request_uris",
            json!(["https://app.example.com/r", "https://192.168.0.1/r"]),
        ),
    ] {
        let body = document(json!({ member: value }));
        let validation = validate_document(&body, U0, &rules(Profile::Mcp));
        assert!(
            validation
                .findings
                .iter()
                .any(|f| f.code.as_str() == "special_use_address" && f.is_error()),
            "{member}: {:?}",
            validation.findings
        );
    }
}

#[test]
fn rule_99_a_document_offering_methods_gets_the_first_without_a_shared_secret() {
    let body = document(json!({
        "token_endpoint_auth_method": null,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none", "private_key_jwt"],
    }));
    let validation = validate_document(&body, U0, &rules(Profile::Mcp));
    assert!(!validation.has_errors(), "{:?}", validation.findings);
    assert_eq!(validation.metadata.token_endpoint_auth_method, "none");
    assert_eq!(
        validation.metadata.token_endpoint_auth_methods_supported,
        ["client_secret_basic", "none", "private_key_jwt"]
    );
    assert!(
        !validation
            .findings
            .iter()
            .any(|f| f.code == crate::registration::Code::AuthMethodDefaulted),
        "a document that offers methods has not left the method out"
    );
}

#[test]
fn rule_99_the_tenants_authorization_server_chooses_among_the_offered_methods() {
    use crate::registration::capabilities::{Capabilities, apply};
    let body = document(json!({
        "token_endpoint_auth_method": null,
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "jwks_uri": "https://app.example.com/jwks.json",
    }));
    let mut validation = validate_document(&body, U0, &rules(Profile::Mcp));
    let only_keys = Capabilities {
        token_endpoint_auth_methods_supported: Some(vec!["private_key_jwt".to_owned()]),
        ..Capabilities::default()
    };
    apply(&mut validation, &only_keys, Profile::Mcp);
    assert_eq!(
        validation.metadata.token_endpoint_auth_method,
        "private_key_jwt"
    );
    let no_match = Capabilities {
        token_endpoint_auth_methods_supported: Some(vec!["client_secret_basic".to_owned()]),
        ..Capabilities::default()
    };
    apply(&mut validation, &no_match, Profile::Mcp);
    assert!(
        validation
            .findings
            .iter()
            .any(|f| f.code == crate::registration::Code::AuthMethodUnsupported && f.is_error()),
        "{:?}",
        validation.findings
    );
}
