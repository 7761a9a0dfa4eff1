//! DCR validation vectors: section E of the registration rules reference and every A4
//! redirect rule, named after the vector or rule they check, run by one `check` function.
//! The OAuth error each rejected vector gets is checked with the mapping itself, in
//! `errors.rs`, which reads [`CASES`].

use super::*;

/// What a profile should make of a registration.
pub(crate) enum Expect {
    /// Passes with no finding at all.
    Accept,
    /// Passes, with exactly these warning codes.
    Warn(&'static [&'static str]),
    /// Denied with this OAuth error and exactly these error codes.
    Reject(&'static str, &'static [&'static str]),
}

use Expect::{Accept, Reject, Warn};
use Profile::{Interop, Mcp, Strict};

pub(crate) const CASES: &[(&str, Profile, &str, Expect)] = &[
    // Section E: RFC 7591 requests.
    (
        "e1_minimal_registration_is_accepted",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_name":"C"}"#,
        Accept,
    ),
    (
        "e2_form_encoded_body_is_not_json",
        Mcp,
        "redirect_uris=https%3A%2F%2Fc.example%2Fcb&client_name=C",
        Reject("invalid_client_metadata", &["invalid_json"]),
    ),
    (
        "e3_fragment_in_redirect_uri",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb#frag"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_fragment"]),
    ),
    (
        "e4_http_redirect_uri_on_a_remote_host",
        Mcp,
        r#"{"redirect_uris":["http://c.example/cb"]}"#,
        Reject("invalid_redirect_uri", &["insecure_redirect_uri"]),
    ),
    (
        "e5_code_grant_without_redirect_uris",
        Mcp,
        r#"{"grant_types":["authorization_code"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uris_missing"]),
    ),
    (
        "e6_code_grant_with_token_response_type",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"grant_types":["authorization_code"],"response_types":["token"]}"#,
        Reject(
            "invalid_client_metadata",
            &["inconsistent_grant_response_types"],
        ),
    ),
    (
        "e7_public_client_with_client_credentials",
        Mcp,
        r#"{"grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}"#,
        Reject("invalid_client_metadata", &["public_client_credentials"]),
    ),
    (
        "e7_confidential_client_credentials_client_is_accepted",
        Mcp,
        r#"{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#,
        Accept,
    ),
    (
        "e8_jwks_and_jwks_uri_together",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"jwks_uri":"https://c.example/jwks","jwks":{"keys":[]}}"#,
        Reject("invalid_client_metadata", &["jwks_and_jwks_uri"]),
    ),
    (
        "e9_unknown_token_endpoint_auth_method",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"magic"}"#,
        Reject("invalid_client_metadata", &["unknown_auth_method"]),
    ),
    (
        "e9_unknown_auth_method_is_a_warning_in_interop",
        Interop,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"magic"}"#,
        Warn(&["unknown_auth_method"]),
    ),
    (
        "e10_unknown_member_is_ignored",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"foo":"bar"}"#,
        Accept,
    ),
    (
        "e11_software_statement_that_is_not_a_jwt",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"software_statement":"not-a-jwt"}"#,
        Reject(
            "invalid_software_statement",
            &["software_statement_malformed"],
        ),
    ),
    // {"alg":"none"} . {"iss":"https://issuer.example"} .
    (
        "e13_unsigned_software_statement",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"software_statement":"eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0."}"#,
        Reject(
            "invalid_software_statement",
            &["software_statement_malformed"],
        ),
    ),
    // {"alg":"RS256"} . {"software_id":"x"} . sig
    (
        "e13_software_statement_without_iss",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"software_statement":"eyJhbGciOiJSUzI1NiJ9.eyJzb2Z0d2FyZV9pZCI6IngifQ.c2ln"}"#,
        Reject(
            "invalid_software_statement",
            &["software_statement_malformed"],
        ),
    ),
    // {"alg":"RS256"} . {"iss":"https://issuer.example"} . sig
    (
        "e82_a_well_formed_statement_passes_the_shape_check",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"software_statement":"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln"}"#,
        Accept,
    ),
    (
        "e15_client_id_in_the_request_is_ignored",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_id":"https://evil.example/x"}"#,
        Warn(&["client_id_ignored"]),
    ),
    (
        "e16_language_tagged_client_name_is_accepted",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_name#ja-Jpan-JP":"クライアント名"}"#,
        Accept,
    ),
    (
        "e17_logo_uri_on_another_host_is_flagged",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"logo_uri":"https://cdn.example.net/logo.png"}"#,
        Warn(&["uri_host_mismatch"]),
    ),
    (
        "e19_cursor_scheme_without_a_dot_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://127.0.0.1/cb"]}"#,
        Warn(&["private_use_scheme_not_reverse_dns"]),
    ),
    (
        "e19_cursor_scheme_without_a_dot_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"application_type":"native"}"#,
        Reject(
            "invalid_redirect_uri",
            &["private_use_scheme_not_reverse_dns"],
        ),
    ),
    (
        "e19_cursor_scheme_is_a_warning_in_interop",
        Interop,
        r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://127.0.0.1/cb"]}"#,
        Warn(&["private_use_scheme_not_reverse_dns"]),
    ),
    // Rule 52: operating-system handlers and places that are not a client.
    (
        "rule_52_an_os_handler_scheme_is_refused",
        Mcp,
        r#"{"redirect_uris":["ms-msdt:/id%20PCWDiagnostic"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_search_ms_is_refused",
        Mcp,
        r#"{"redirect_uris":["search-ms:query=invoice&crumb=location:attacker.example"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_blob_and_mailto_are_refused",
        Mcp,
        r#"{"redirect_uris":["blob:https://c.example/1","mailto:a@c.example"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    // Rules 87 and 88 (MCP 2026-07-28, SEP-837; OIDC Registration §2): application_type.
    (
        "rule_87_application_type_missing_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"C"}"#,
        Warn(&["application_type_missing"]),
    ),
    (
        "rule_87_application_type_missing_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"C"}"#,
        Reject("invalid_client_metadata", &["application_type_missing"]),
    ),
    (
        "rule_87_application_type_sent_is_accepted_by_strict",
        Strict,
        r#"{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"C","application_type":"native"}"#,
        Accept,
    ),
    (
        "rule_88_application_type_foobar_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"application_type":"foobar"}"#,
        Reject("invalid_client_metadata", &["application_type_invalid"]),
    ),
    (
        "rule_88_native_with_a_remote_https_redirect_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["https://vscode.dev/redirect","http://127.0.0.1:33418/"],"application_type":"native"}"#,
        Warn(&["application_type_mismatch"]),
    ),
    (
        "rule_88_native_with_a_remote_https_redirect_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["https://vscode.dev/redirect"],"application_type":"native"}"#,
        Reject("invalid_client_metadata", &["application_type_mismatch"]),
    ),
    (
        "rule_88_web_with_only_loopback_redirects_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["http://127.0.0.1:8080/cb"],"application_type":"web"}"#,
        Warn(&["application_type_mismatch"]),
    ),
    (
        "rule_88_native_with_loopback_and_a_private_scheme_agrees",
        Mcp,
        r#"{"redirect_uris":["http://[::1]/cb","com.example.app:/cb"],"application_type":"native"}"#,
        Warn(&["private_use_scheme"]),
    ),
    (
        "rule_88_web_with_https_agrees",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"application_type":"web"}"#,
        Accept,
    ),
    // Rule 89: default_max_age and require_auth_time.
    (
        "rule_89_negative_default_max_age_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"default_max_age":-1}"#,
        Reject("invalid_client_metadata", &["default_max_age_invalid"]),
    ),
    (
        "rule_89_fractional_default_max_age_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"default_max_age":1.5}"#,
        Reject("invalid_client_metadata", &["default_max_age_invalid"]),
    ),
    (
        "rule_89_default_max_age_as_a_string_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"default_max_age":"3600"}"#,
        Reject("invalid_client_metadata", &["invalid_field_type"]),
    ),
    (
        "rule_89_require_auth_time_as_a_string_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"require_auth_time":"yes"}"#,
        Reject("invalid_client_metadata", &["invalid_field_type"]),
    ),
    (
        "rule_89_valid_oidc_numbers_and_booleans_pass",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"default_max_age":3600,"require_auth_time":true}"#,
        Accept,
    ),
    // Rule 90: post-logout redirect URIs follow the redirect URI rules.
    (
        "rule_90_post_logout_redirect_uri_with_a_fragment_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"post_logout_redirect_uris":["https://c.example/bye#x"]}"#,
        Reject("invalid_client_metadata", &["redirect_uri_fragment"]),
    ),
    (
        "rule_90_malformed_post_logout_redirect_uri_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"post_logout_redirect_uris":["/bye"]}"#,
        Reject("invalid_client_metadata", &["redirect_uri_not_absolute"]),
    ),
    (
        "rule_90_javascript_post_logout_redirect_uri_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"post_logout_redirect_uris":["javascript:alert(1)"]}"#,
        Reject("invalid_client_metadata", &["dangerous_scheme"]),
    ),
    (
        "rule_90_https_post_logout_redirect_uri_passes",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"post_logout_redirect_uris":["https://c.example/bye"]}"#,
        Accept,
    ),
    // Rule 91: URIs the AS fetches or sends the user to are https.
    (
        "rule_91_http_initiate_login_uri_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"initiate_login_uri":"http://c.example/login"}"#,
        Reject("invalid_client_metadata", &["https_required"]),
    ),
    (
        "rule_91_http_sector_identifier_uri_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"sector_identifier_uri":"http://c.example/sector.json"}"#,
        Reject("invalid_client_metadata", &["https_required"]),
    ),
    (
        "rule_91_http_request_uri_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"request_uris":["https://c.example/r1","http://c.example/r2"]}"#,
        Reject("invalid_client_metadata", &["https_required"]),
    ),
    (
        "rule_91_https_oidc_uris_pass",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"initiate_login_uri":"https://c.example/login","request_uris":["https://c.example/r"]}"#,
        Accept,
    ),
    // Rules 92-94 and 97: JOSE algorithms.
    (
        "rule_92_encryption_enc_without_alg_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"id_token_encrypted_response_enc":"A128CBC-HS256"}"#,
        Reject("invalid_client_metadata", &["encryption_alg_missing"]),
    ),
    (
        "rule_92_encryption_alg_without_enc_passes",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"userinfo_encrypted_response_alg":"RSA-OAEP-256"}"#,
        Accept,
    ),
    (
        "rule_93_unsigned_id_tokens_are_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"id_token_signed_response_alg":"none"}"#,
        Reject("invalid_client_metadata", &["unsigned_id_token"]),
    ),
    (
        "rule_93_unsigned_id_tokens_are_a_warning_in_interop",
        Interop,
        r#"{"redirect_uris":["https://c.example/cb"],"id_token_signed_response_alg":"none"}"#,
        Warn(&["unsigned_id_token"]),
    ),
    (
        "rule_94_client_secret_jwt_with_rs256_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"client_secret_jwt","token_endpoint_auth_signing_alg":"RS256"}"#,
        Reject("invalid_client_metadata", &["auth_signing_alg_mismatch"]),
    ),
    (
        "rule_94_private_key_jwt_with_hs256_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://c.example/jwks","token_endpoint_auth_signing_alg":"HS256"}"#,
        Reject("invalid_client_metadata", &["auth_signing_alg_mismatch"]),
    ),
    (
        "rule_94_client_secret_jwt_with_hs256_passes",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"client_secret_jwt","token_endpoint_auth_signing_alg":"HS256"}"#,
        Accept,
    ),
    (
        "rule_94_auth_signing_alg_none_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://c.example/jwks","token_endpoint_auth_signing_alg":"none"}"#,
        Reject("invalid_client_metadata", &["auth_signing_alg_mismatch"]),
    ),
    (
        "rule_97_unknown_algorithm_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"userinfo_signed_response_alg":"RS257"}"#,
        Reject("invalid_client_metadata", &["unknown_algorithm"]),
    ),
    // Rule 95: contacts.
    (
        "rule_95_a_contact_that_is_not_an_email_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"contacts":["ops@c.example","call us"]}"#,
        Warn(&["contact_not_email"]),
    ),
    (
        "rule_95_a_contact_that_is_not_an_email_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["https://c.example/cb"],"application_type":"web","contacts":["https://c.example/contact"]}"#,
        Reject("invalid_client_metadata", &["contact_not_email"]),
    ),
    // Rule 96: empty values.
    (
        "rule_96_empty_client_name_is_refused",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_name":""}"#,
        Reject("invalid_client_metadata", &["client_name_empty"]),
    ),
    (
        "rule_96_empty_optional_uris_and_scope_are_read_as_absent_in_mcp",
        Mcp,
        r#"{"redirect_uris":["http://localhost:6274/oauth/callback"],"client_uri":"","logo_uri":"","scope":""}"#,
        Warn(&["empty_value"]),
    ),
    (
        "rule_96_empty_optional_uris_are_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["https://c.example/cb"],"application_type":"web","tos_uri":""}"#,
        Reject("invalid_client_metadata", &["empty_value"]),
    ),
    (
        "rule_96_empty_optional_uris_are_ignored_by_interop",
        Interop,
        r#"{"redirect_uris":["https://c.example/cb"],"policy_uri":""}"#,
        Accept,
    ),
    // A4, rule 45 / C18: redirect_uris must be a non-empty array of strings.
    (
        "rule_45_empty_redirect_uris",
        Mcp,
        r#"{"redirect_uris":[]}"#,
        Reject("invalid_redirect_uri", &["redirect_uris_invalid"]),
    ),
    (
        "rule_45_redirect_uris_as_a_string",
        Mcp,
        r#"{"redirect_uris":"https://c.example/cb"}"#,
        Reject("invalid_redirect_uri", &["redirect_uris_invalid"]),
    ),
    (
        "rule_45_redirect_uris_with_a_number",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb",7]}"#,
        Reject("invalid_redirect_uri", &["redirect_uris_invalid"]),
    ),
    // Rule 49: absolute, no fragment (an empty one included), a query is kept.
    (
        "rule_49_relative_redirect_uri",
        Mcp,
        r#"{"redirect_uris":["/callback"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_not_absolute"]),
    ),
    (
        "rule_49_empty_fragment",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb#"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_fragment"]),
    ),
    (
        "rule_49_query_is_allowed",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb?tenant=a"]}"#,
        Accept,
    ),
    // Rule 50: http only for loopback.
    (
        "rule_50_http_loopback_ipv4",
        Mcp,
        r#"{"redirect_uris":["http://127.0.0.1:8080/cb"]}"#,
        Accept,
    ),
    (
        "rule_50_http_loopback_anywhere_in_127_slash_8",
        Mcp,
        r#"{"redirect_uris":["http://127.1.2.3/cb"]}"#,
        Accept,
    ),
    (
        "rule_50_http_loopback_ipv6",
        Mcp,
        r#"{"redirect_uris":["http://[::1]:8080/cb"]}"#,
        Accept,
    ),
    (
        "rule_50_loopback_lookalike_host_is_not_loopback",
        Mcp,
        r#"{"redirect_uris":["http://127.0.0.1.evil.com/cb"]}"#,
        Reject("invalid_redirect_uri", &["insecure_redirect_uri"]),
    ),
    (
        "rule_50_http_private_address_is_not_loopback",
        Mcp,
        r#"{"redirect_uris":["http://192.168.1.1/cb"]}"#,
        Reject("invalid_redirect_uri", &["insecure_redirect_uri"]),
    ),
    // Rule 48 / Q12: the name localhost.
    (
        "rule_48_localhost_is_accepted_by_mcp",
        Mcp,
        r#"{"redirect_uris":["http://localhost/callback"]}"#,
        Accept,
    ),
    (
        "rule_48_localhost_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["http://localhost/callback"]}"#,
        Reject("invalid_redirect_uri", &["localhost_redirect_uri"]),
    ),
    // Rules 51 and 52 / Q13: private-use schemes.
    (
        "rule_51_reverse_dns_scheme_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["com.example.app:/oauth2redirect"]}"#,
        Warn(&["private_use_scheme"]),
    ),
    (
        "rule_51_reverse_dns_scheme_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["com.example.app:/oauth2redirect"]}"#,
        Reject("invalid_redirect_uri", &["private_use_scheme"]),
    ),
    (
        "rule_51_reverse_dns_scheme_is_accepted_by_interop",
        Interop,
        r#"{"redirect_uris":["com.example.app:/oauth2redirect"]}"#,
        Accept,
    ),
    (
        "rule_52_scheme_without_a_dot_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["myapp://callback"]}"#,
        Warn(&["private_use_scheme_not_reverse_dns"]),
    ),
    (
        "rule_52_scheme_without_a_dot_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["myapp://callback"],"application_type":"native"}"#,
        Reject(
            "invalid_redirect_uri",
            &["private_use_scheme_not_reverse_dns"],
        ),
    ),
    // Rule 52 / C21: dangerous schemes, in every URI member.
    (
        "rule_52_javascript_redirect_uri",
        Mcp,
        r#"{"redirect_uris":["javascript:alert(1)"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_data_redirect_uri",
        Mcp,
        r#"{"redirect_uris":["data:text/html,<script>alert(1)</script>"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_file_redirect_uri",
        Mcp,
        r#"{"redirect_uris":["file:///etc/passwd"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_vbscript_redirect_uri_in_upper_case",
        Mcp,
        r#"{"redirect_uris":["VBScript:msgbox(1)"]}"#,
        Reject("invalid_redirect_uri", &["dangerous_scheme"]),
    ),
    (
        "rule_52_javascript_logo_uri",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"logo_uri":"javascript:alert(1)"}"#,
        Reject("invalid_client_metadata", &["dangerous_scheme"]),
    ),
    (
        "rule_52_data_uri_in_a_language_tagged_member",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"policy_uri#fr":"data:text/html,x"}"#,
        Reject("invalid_client_metadata", &["dangerous_scheme"]),
    ),
    (
        "rule_52_file_client_uri",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_uri":"file:///etc/passwd"}"#,
        Reject("invalid_client_metadata", &["dangerous_scheme"]),
    ),
    // Rule 56: no wildcards.
    (
        "rule_56_wildcard_port",
        Mcp,
        r#"{"redirect_uris":["http://localhost:*/callback"]}"#,
        Reject("invalid_redirect_uri", &["wildcard_redirect_uri"]),
    ),
    (
        "rule_56_wildcard_host",
        Mcp,
        r#"{"redirect_uris":["https://*.example.com/cb"]}"#,
        Reject("invalid_redirect_uri", &["wildcard_redirect_uri"]),
    ),
    // Rule 11: strings that parsers repair.
    (
        "rule_11_leading_space",
        Mcp,
        r#"{"redirect_uris":[" https://c.example/cb"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_malformed"]),
    ),
    (
        "rule_11_backslash",
        Mcp,
        r#"{"redirect_uris":["https://c.example\\cb"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_malformed"]),
    ),
    (
        "rule_11_bad_percent_escape",
        Mcp,
        r#"{"redirect_uris":["https://c.example/c%ZZ"]}"#,
        Reject("invalid_redirect_uri", &["redirect_uri_malformed"]),
    ),
    // Rule 43: the other URI members.
    (
        "rule_43_http_client_uri_is_a_warning_in_mcp",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_uri":"http://c.example/"}"#,
        Warn(&["uri_not_https"]),
    ),
    (
        "rule_43_http_client_uri_is_refused_by_strict",
        Strict,
        r#"{"redirect_uris":["https://c.example/cb"],"client_uri":"http://c.example/"}"#,
        Reject("invalid_client_metadata", &["uri_not_https"]),
    ),
    (
        "rule_43_http_jwks_uri_is_always_refused",
        Interop,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"http://c.example/jwks"}"#,
        Reject("invalid_client_metadata", &["jwks_uri_not_https"]),
    ),
    (
        "rule_43_relative_tos_uri",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"tos_uri":"/tos"}"#,
        Reject("invalid_client_metadata", &["uri_not_absolute"]),
    ),
    // Rules 34, 36 and 37: keys.
    (
        "rule_34_private_rsa_key",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"x","e":"AQAB","d":"secret"}]}}"#,
        Reject("invalid_client_metadata", &["private_key_material"]),
    ),
    (
        "rule_34_symmetric_key",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"jwks":{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}}"#,
        Reject("invalid_client_metadata", &["symmetric_key_material"]),
    ),
    (
        "rule_36_jwks_without_keys",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"jwks":{"key":"x"}}"#,
        Reject("invalid_client_metadata", &["jwks_invalid"]),
    ),
    (
        "rule_37_private_key_jwt_without_keys",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
        Reject("invalid_client_metadata", &["no_key_material"]),
    ),
    (
        "rule_37_private_key_jwt_with_public_jwks",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}}"#,
        Accept,
    ),
    // Rule 41: OAuth 2.1 removes the implicit grant.
    (
        "rule_41_implicit_grant",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"grant_types":["implicit"],"response_types":["token"]}"#,
        Reject("invalid_client_metadata", &["unsupported_grant_type"]),
    ),
    // Rule 78: members of the wrong type are refused, not silently dropped.
    (
        "rule_78_client_name_of_the_wrong_type",
        Mcp,
        r#"{"redirect_uris":["https://c.example/cb"],"client_name":42}"#,
        Reject("invalid_client_metadata", &["invalid_field_type"]),
    ),
    (
        "rule_29_metadata_that_is_not_an_object",
        Mcp,
        r#"["https://c.example/cb"]"#,
        Reject("invalid_client_metadata", &["not_object"]),
    ),
];

fn codes(validation: &Validation, severity: Severity) -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = validation
        .findings
        .iter()
        .filter(|finding| finding.severity == severity)
        .map(|finding| finding.code.as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn check(name: &str, profile: Profile, metadata: &str, expect: &Expect) -> Result<(), String> {
    let mut validation = validate_dcr(metadata, profile);
    // Rule 87 (no `application_type`) concerns nearly every vector written before MCP
    // 2026-07-28; it is checked by the vectors that name it.
    let names_rule_87 = match expect {
        Accept => false,
        Warn(codes) | Reject(_, codes) => codes.contains(&"application_type_missing"),
    };
    if !names_rule_87 {
        validation
            .findings
            .retain(|finding| finding.code != Code::ApplicationTypeMissing);
    }
    let errors = codes(&validation, Severity::Error);
    let warnings = codes(&validation, Severity::Warning);
    let sorted = |codes: &[&'static str]| {
        let mut codes = codes.to_vec();
        codes.sort_unstable();
        codes
    };
    let problem = match expect {
        Accept if !validation.findings.is_empty() => Some(format!(
            "expected no findings, got {:?}",
            validation.findings
        )),
        Warn(expected) if !errors.is_empty() || warnings != sorted(expected) => Some(format!(
            "expected warnings {expected:?} only, got errors {errors:?} warnings {warnings:?}"
        )),
        Reject(_, expected) if errors != sorted(expected) => {
            Some(format!("expected errors {expected:?}, got {errors:?}"))
        }
        _ => None,
    };
    match problem {
        Some(problem) => Err(format!("{name} ({}): {problem}", profile.as_str())),
        None => Ok(()),
    }
}

#[test]
fn dcr_vectors() {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|(name, profile, metadata, expect)| {
            check(name, *profile, metadata, expect).err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn e1_rfc7591_defaults_are_applied() {
    let validation = validate_dcr(r#"{"redirect_uris":["https://c.example/cb"]}"#, Mcp);
    let metadata = &validation.metadata;
    assert_eq!(metadata.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(metadata.grant_types, vec!["authorization_code"]);
    assert_eq!(metadata.response_types, vec!["code"]);
}

#[test]
fn e10_unknown_members_and_e15_client_id_are_not_echoed() {
    let validation = validate_dcr(
        r#"{"redirect_uris":["https://c.example/cb"],"foo":"bar","client_id":"https://evil.example/x"}"#,
        Mcp,
    );
    let json = validation.metadata.to_json();
    assert!(!json.contains("foo"), "unknown member echoed: {json}");
    assert!(!json.contains("evil.example"), "client_id echoed: {json}");
}

#[test]
fn e16_language_tagged_members_are_kept() {
    let validation = validate_dcr(
        r#"{"redirect_uris":["https://c.example/cb"],"client_name":"Client","client_name#ja-Jpan-JP":"クライアント名","tos_uri#fr":"https://c.example/fr/tos"}"#,
        Mcp,
    );
    let normalized: serde_json::Value =
        serde_json::from_str(&validation.metadata.to_json()).expect("normalized JSON");
    assert_eq!(normalized["client_name#ja-Jpan-JP"], "クライアント名");
    assert_eq!(normalized["tos_uri#fr"], "https://c.example/fr/tos");
    assert_eq!(normalized["client_name"], "Client");
}

#[test]
fn e82_the_software_statement_is_echoed_unchanged() {
    let statement = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.c2ln";
    let validation = validate_dcr(
        &format!(
            r#"{{"redirect_uris":["https://c.example/cb"],"software_statement":"{statement}"}}"#
        ),
        Mcp,
    );
    assert_eq!(
        validation.metadata.software_statement.as_deref(),
        Some(statement)
    );
}

#[test]
fn every_finding_names_the_member_it_concerns() {
    let validation = validate_dcr(
        r#"{"redirect_uris":["https://c.example/cb","https://c.example/x#y"],"logo_uri":"javascript:x"}"#,
        Mcp,
    );
    let fields: Vec<&str> = validation
        .findings
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    assert_eq!(
        fields,
        vec!["redirect_uris[1]", "logo_uri", "application_type"]
    );
}

#[test]
fn sixteen_thousand_bad_redirect_uris_give_a_hundred_findings_and_a_count() {
    use crate::registration::findings::{MAX_FINDINGS, bounded};
    let uris: Vec<String> = (0..16_000).map(|n| format!("\"x{n}\"")).collect();
    let body = format!("{{\"redirect_uris\":[{}]}}", uris.join(","));
    assert!(body.len() < 150 * 1024);
    let validation = validate_dcr(&body, Mcp);
    assert!(
        validation.findings.len() >= 16_000,
        "the validator sees every one"
    );
    let findings = bounded(validation.findings);
    assert_eq!(findings.len(), MAX_FINDINGS + 1);
    let last = findings.last().unwrap();
    assert_eq!(last.code, Code::FindingsTruncated);
    assert!(
        last.is_error(),
        "errors were left out, so the count is an error"
    );
    assert!(last.message.starts_with("and "), "{}", last.message);
    let echoed: usize = findings
        .iter()
        .map(|f| f.message.len() + f.field.len())
        .sum();
    assert!(echoed < 64 * 1024, "{echoed} bytes of findings");
}

#[test]
fn a_long_echoed_value_is_cut_in_its_finding() {
    use crate::registration::findings::{MAX_MESSAGE_CHARS, bounded};
    let long = format!("https://app.example.com/{}#frag", "a".repeat(20_000));
    let body = format!("{{\"redirect_uris\":[\"{long}\"]}}");
    let findings = bounded(validate_dcr(&body, Mcp).findings);
    assert!(!findings.is_empty());
    for finding in &findings {
        assert!(
            finding.message.chars().count() <= MAX_MESSAGE_CHARS,
            "{}",
            finding.message
        );
    }
    assert!(findings[0].message.ends_with('…'));
}

/// F-8: the review's repro (a jwks_uri on the cloud metadata address, approved) and the
/// other URIs an AS fetches, in DCR.
#[test]
fn no_uri_in_a_registration_may_name_a_special_use_host() {
    for (member, value) in [
        ("jwks_uri", r#""https://169.254.169.254/latest/meta-data/""#),
        ("client_uri", r#""https://[::ffff:10.0.0.1]/""#),
        ("logo_uri#fr", r#""https://169.254.169.254/x""#),
        ("policy_uri", r#""https://localhost/policy""#),
        ("sector_identifier_uri", r#""https://10.0.0.5/s.json""#),
        ("request_uris", r#"["https://[fd00::1]/r"]"#),
        ("initiate_login_uri", r#""https://0x7f000001/login""#),
    ] {
        let body = format!(
            r#"{{"redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"private_key_jwt","{member}":{value}}}"#
        );
        let validation = validate_dcr(&body, Mcp);
        assert!(
            validation
                .findings
                .iter()
                .any(|f| f.code == Code::SpecialUseAddress && f.is_error()),
            "{member}: {:?}",
            validation.findings
        );
    }
}
