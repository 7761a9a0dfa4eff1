//! Cedar semantics: each outcome rule of DESIGN.md, the starter pack, and load errors that
//! point at file and line.

use std::path::Path;
use std::time::SystemTime;

use super::*;
use crate::errors::OAuthErrorCode;
use crate::registration::{Profile, validate_dcr};
use crate::signals::{RequestFacts, Signals, derive_signals};
use crate::vocab::{Caller, Decision, RegistrationType};

const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
const ENTITIES: &str = include_str!("../../policies/entities.json");
const STARTER_POLICIES: &[(&str, &str)] = &[
    (
        "10-approve.cedar",
        include_str!("../../policies/10-approve.cedar"),
    ),
    (
        "20-deny.cedar",
        include_str!("../../policies/20-deny.cedar"),
    ),
    (
        "30-step-up.cedar",
        include_str!("../../policies/30-step-up.cedar"),
    ),
];

fn write_dir(dir: &Path, files: &[(&str, &str)]) {
    std::fs::write(dir.join("schema.cedarschema"), SCHEMA).unwrap();
    std::fs::write(dir.join("entities.json"), ENTITIES).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The default vocabulary and the `audit` obligation these tests use.
fn vocabulary() -> Vocabulary {
    let mut vocabulary = Vocabulary::default();
    vocabulary.obligations.push("audit".to_owned());
    vocabulary
}

fn bundle(files: &[(&str, &str)]) -> PolicyBundle {
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), files);
    load_policy_dir_with(dir.path(), &vocabulary())
        .unwrap_or_else(|errors| panic!("policies should load:\n{errors}"))
}

fn load_errors(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), files);
    match load_policy_dir_with(dir.path(), &vocabulary()) {
        Ok(_) => panic!("the policies should be refused"),
        Err(errors) => errors
            .0
            .iter()
            .map(|error| {
                format!(
                    "{}:{}: {}",
                    error.file.file_name().unwrap().to_string_lossy(),
                    error.line,
                    error.message
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn signals(metadata: &str, tenant: &str, completed: &[&str]) -> Signals {
    let validation = validate_dcr(metadata, Profile::Mcp);
    assert!(
        !validation.has_errors(),
        "test metadata must be valid: {:?}",
        validation.findings
    );
    derive_signals(
        &validation,
        RequestFacts {
            tenant: tenant.to_owned(),
            registration_type: RegistrationType::Dcr,
            client_id: None,
            caller: Caller {
                ip: Some("203.0.113.7".parse().unwrap()),
                ..Caller::default()
            },
            initial_access_token: false,
            completed_challenges: completed.iter().map(|c| c.to_string()).collect(),
            cimd_cache: None,
            software_statement_issuer: None,
            rates: ["tenant", "fingerprint"]
                .iter()
                .map(|dimension| {
                    let windows = ["1m", "1h", "24h"]
                        .iter()
                        .map(|w| (w.to_string(), 0))
                        .collect();
                    (dimension.to_string(), windows)
                })
                .collect(),
            duplicates: 0,
            duplicate_first_seen: None,
            recognition: Default::default(),
            now: SystemTime::now(),
        },
    )
}

fn decide(bundle: &PolicyBundle, metadata: &str) -> PolicyOutcome {
    bundle.decide(&signals(metadata, "default", &[]), "client", false)
}

fn policy_ids(outcome: &PolicyOutcome) -> Vec<&str> {
    outcome
        .reasons
        .iter()
        .map(|r| r.policy_id.as_str())
        .collect()
}

const WEB_CLIENT: &str =
    r#"{"client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/cb"]}"#;
const CROSS_DOMAIN_CLIENT: &str = r#"{"client_uri":"https://app.example.com","redirect_uris":["https://cb.other.example.net/cb"]}"#;
const LOOPBACK_CLIENT: &str =
    r#"{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#;
const BLOCKED_CLIENT: &str = r#"{"redirect_uris":["https://login.evil.example/cb"]}"#;

const PERMIT_ALL: &str = r#"
@id("permit_all")
@reason("everyone may register")
@obligation("require_consent, audit")
permit (principal, action, resource);
"#;
const FORBID_ALL: &str = r#"
@id("forbid_all")
@reason("registration is closed")
@error("invalid_client_metadata")
forbid (principal, action, resource);
"#;
const STEP_UP_ALL: &str = r#"
@id("consent_first")
@reason("the user must consent")
@step_up("user_consent")
forbid (principal, action, resource);
"#;

#[test]
fn rule_2_a_satisfied_forbid_denies_with_its_error_code() {
    let outcome = decide(
        &bundle(&[("a.cedar", PERMIT_ALL), ("b.cedar", FORBID_ALL)]),
        WEB_CLIENT,
    );
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(policy_ids(&outcome), vec!["forbid_all"]);
    assert_eq!(outcome.reasons[0].message, "registration is closed");
    assert_eq!(outcome.error, Some(OAuthErrorCode::InvalidClientMetadata));
    assert!(outcome.obligations.is_empty());
}

#[test]
fn rule_3_a_step_up_forbid_with_a_permit_steps_up() {
    let outcome = decide(
        &bundle(&[("a.cedar", PERMIT_ALL), ("b.cedar", STEP_UP_ALL)]),
        WEB_CLIENT,
    );
    assert_eq!(outcome.decision, Decision::StepUp);
    assert_eq!(outcome.challenges, vec!["user_consent"]);
    assert_eq!(policy_ids(&outcome), vec!["consent_first"]);
}

#[test]
fn rule_3_a_step_up_forbid_without_a_permit_denies() {
    let outcome = decide(&bundle(&[("b.cedar", STEP_UP_ALL)]), WEB_CLIENT);
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(
        policy_ids(&outcome),
        vec![decide::DEFAULT_DENY, "consent_first"]
    );
}

#[test]
fn rule_3_a_plain_forbid_outranks_a_step_up() {
    let outcome = decide(
        &bundle(&[
            ("a.cedar", PERMIT_ALL),
            ("b.cedar", STEP_UP_ALL),
            ("c.cedar", FORBID_ALL),
        ]),
        WEB_CLIENT,
    );
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(policy_ids(&outcome), vec!["forbid_all"]);
}

#[test]
fn rule_3_a_completed_challenge_lets_the_permit_approve() {
    let policies = bundle(&[("a.cedar", PERMIT_ALL), ("b.cedar", STEP_UP_ALL)]);
    let outcome = policies.decide(
        &signals(WEB_CLIENT, "default", &["user_consent"]),
        "client",
        false,
    );
    assert_eq!(outcome.decision, Decision::Approve);
}

#[test]
fn rule_3_the_ticket_lists_every_pending_challenge() {
    let second = r#"
@id("admin_first")
@step_up("admin_approval")
forbid (principal, action, resource);
"#;
    let outcome = decide(
        &bundle(&[
            ("a.cedar", PERMIT_ALL),
            ("b.cedar", STEP_UP_ALL),
            ("c.cedar", second),
        ]),
        WEB_CLIENT,
    );
    assert_eq!(outcome.decision, Decision::StepUp);
    assert_eq!(outcome.challenges, vec!["user_consent", "admin_approval"]);
}

#[test]
fn rule_4_a_permit_approves_with_its_obligations() {
    let outcome = decide(&bundle(&[("a.cedar", PERMIT_ALL)]), WEB_CLIENT);
    assert_eq!(outcome.decision, Decision::Approve);
    assert_eq!(outcome.obligations, vec!["require_consent", "audit"]);
    assert_eq!(outcome.reasons[0].message, "everyone may register");
}

#[test]
fn rule_5_no_permit_denies_by_default() {
    let outcome = decide(&bundle(&[]), WEB_CLIENT);
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(policy_ids(&outcome), vec![decide::DEFAULT_DENY]);
    assert_eq!(outcome.error, None);
}

#[test]
fn rule_6_a_policy_that_errors_fails_closed_even_beside_a_permit() {
    // Passes strict validation, but overflows at evaluation time.
    let overflowing = r#"
@id("overflowing_forbid")
forbid (principal, action, resource)
when { context.now.offset(duration("106751991167d")) > context.now };
"#;
    let outcome = decide(
        &bundle(&[("a.cedar", PERMIT_ALL), ("b.cedar", overflowing)]),
        WEB_CLIENT,
    );
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(outcome.findings.len(), 1, "{:?}", outcome.findings);
    assert_eq!(outcome.findings[0].code.as_str(), "policy_evaluation_error");
    assert!(outcome.findings[0].message.contains("overflowing_forbid"));
    assert!(outcome.obligations.is_empty());
}

#[test]
fn starter_pack_approves_https_dcr_clients_with_the_consent_screen() {
    let outcome = decide(&bundle(STARTER_POLICIES), WEB_CLIENT);
    assert_eq!(outcome.decision, Decision::Approve);
    assert_eq!(
        policy_ids(&outcome),
        vec![
            "approve_https_or_loopback_redirects",
            "approve_dcr_clients_with_consent"
        ]
    );
    assert_eq!(outcome.obligations, vec!["require_consent"]);
}

#[test]
fn starter_pack_approves_loopback_native_clients_with_consent() {
    let outcome = decide(&bundle(STARTER_POLICIES), LOOPBACK_CLIENT);
    assert_eq!(outcome.decision, Decision::Approve);
    assert_eq!(outcome.obligations, vec!["require_consent"]);
}

#[test]
fn starter_pack_denies_blocklisted_redirect_domains() {
    let outcome = decide(&bundle(STARTER_POLICIES), BLOCKED_CLIENT);
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(
        policy_ids(&outcome),
        vec!["deny_blocklisted_redirect_hosts"]
    );
    assert_eq!(outcome.error, Some(OAuthErrorCode::InvalidRedirectUri));
}

#[test]
fn starter_pack_steps_up_cross_domain_redirects_for_admin_approval() {
    let outcome = decide(&bundle(STARTER_POLICIES), CROSS_DOMAIN_CLIENT);
    assert_eq!(outcome.decision, Decision::StepUp);
    assert_eq!(outcome.challenges, vec!["admin_approval"]);
}

#[test]
fn starter_pack_approves_private_scheme_dcr_clients_with_the_consent_screen() {
    let outcome = decide(
        &bundle(STARTER_POLICIES),
        r#"{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"]}"#,
    );
    assert_eq!(outcome.decision, Decision::Approve);
    assert_eq!(
        policy_ids(&outcome),
        vec!["approve_dcr_clients_with_consent"]
    );
    assert_eq!(outcome.obligations, vec!["require_consent"]);
}

#[test]
fn starter_pack_denies_dcr_clients_without_redirect_uris_by_default() {
    let outcome = decide(
        &bundle(STARTER_POLICIES),
        r#"{"grant_types":["client_credentials"],"token_endpoint_auth_method":"client_secret_basic"}"#,
    );
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(policy_ids(&outcome), vec![decide::DEFAULT_DENY]);
}

#[test]
fn undeclared_tenants_take_the_default_tenants_attributes() {
    let policies = bundle(STARTER_POLICIES);
    let outcome = policies.decide(&signals(BLOCKED_CLIENT, "acme", &[]), "client", true);
    assert_eq!(outcome.decision, Decision::Deny);
    let explain = outcome.explain.expect("explain was asked for");
    assert_eq!(explain["resource"]["uid"]["id"], "acme");
    assert_eq!(explain["context"]["tenant"], "acme");
}

#[test]
fn explain_shows_the_principal_and_context_the_policies_saw() {
    let policies = bundle(STARTER_POLICIES);
    let outcome = policies.decide(
        &signals(CROSS_DOMAIN_CLIENT, "default", &[]),
        "client",
        true,
    );
    let explain = outcome.explain.expect("explain was asked for");
    let attrs = &explain["principal"]["attrs"];
    assert_eq!(attrs["client_uri_domain"], "example.com");
    assert_eq!(
        attrs["redirect_domains"],
        serde_json::json!(["example.net"])
    );
    assert_eq!(explain["context"]["ip"]["__extn"]["arg"], "203.0.113.7");
    assert_eq!(explain["action"], "Action::\"register_dcr\"");
}

#[test]
fn policies_are_named_by_their_id_annotation_or_file_and_line() {
    let unnamed = "\n\npermit (principal, action, resource);\n";
    let policies = bundle(&[("a.cedar", PERMIT_ALL), ("b.cedar", unnamed)]);
    assert!(policies.info("permit_all").is_some());
    assert_eq!(policies.info("b.cedar:3").map(|info| info.line), Some(3));
}

#[test]
fn the_version_changes_when_a_policy_changes() {
    let first = bundle(&[("a.cedar", PERMIT_ALL)]);
    let same = bundle(&[("a.cedar", PERMIT_ALL)]);
    let changed = bundle(&[("a.cedar", FORBID_ALL)]);
    assert_eq!(first.version, same.version);
    assert_ne!(first.version, changed.version);
}

#[test]
fn a_syntax_error_is_reported_with_file_and_line() {
    let broken = "@id(\"ok\")\npermit (principal, action, resource);\n\nforbid (principal, action, resource) when { principal. };\n";
    let errors = load_errors(&[("bad.cedar", broken)]);
    assert!(errors.starts_with("bad.cedar:4:"), "{errors}");
}

#[test]
fn a_type_error_against_the_schema_is_reported_with_file_and_line() {
    let mistyped = "\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.redirect_kind.contains(\"https\") };\n";
    let errors = load_errors(&[("typo.cedar", mistyped)]);
    assert!(errors.starts_with("typo.cedar:4:"), "{errors}");
    assert!(errors.contains("redirect_kind"), "{errors}");
}

#[test]
fn duplicate_ids_and_misplaced_annotations_are_refused() {
    let errors = load_errors(&[
        ("a.cedar", PERMIT_ALL),
        ("b.cedar", PERMIT_ALL),
        (
            "c.cedar",
            "@id(\"p\")\n@step_up(\"admin_approval\")\npermit (principal, action, resource);\n",
        ),
        (
            "d.cedar",
            "@id(\"f\")\n@error(\"access_denied\")\nforbid (principal, action, resource);\n",
        ),
    ]);
    assert!(
        errors.contains("b.cedar:2: policy id `permit_all` is already used at a.cedar:2"),
        "{errors}"
    );
    assert!(
        errors.contains("c.cedar:1: policy `p`: `@step_up` belongs on a forbid"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "d.cedar:1: policy `f`: `@error(\"access_denied\")` is not an OAuth error code"
        ),
        "{errors}"
    );
}

#[test]
fn unknown_challenges_and_obligations_are_refused_and_reasonless_forbids_warned() {
    let dir = tempfile::tempdir().unwrap();
    write_dir(
        dir.path(),
        &[(
            "a.cedar",
            "@id(\"f\")\n@step_up(\"mfa\")\nforbid (principal, action, resource);\n\
             @id(\"p\")\n@reason(\"r\")\n@obligation(\"audit\")\npermit (principal, action, resource);\n",
        )],
    );
    let errors = load_policy_dir(dir.path())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        errors.contains("a.cedar:1: policy `f`: step-up challenge `mfa` is not one clientgate knows (admin_approval, user_consent)"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "a.cedar:4: policy `p`: obligation `audit` is not one your authorization server honours"
        ),
        "{errors}"
    );

    write_dir(
        dir.path(),
        &[(
            "a.cedar",
            "@id(\"f\")\n@step_up(\"admin_approval\")\n@reasn(\"typo\")\nforbid (principal, action, resource);\n",
        )],
    );
    let loaded = load_policy_dir(dir.path()).expect("warnings do not refuse");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].ends_with("a.cedar:1: policy `f` is a forbid without `@reason`: its denials will only name the policy"), "{warnings:?}");
    assert!(
        warnings[1].contains("clientgate ignores `@reasn`"),
        "{warnings:?}"
    );
}

#[test]
fn the_schemas_redirect_summaries_reach_the_policies() {
    // `loopback_only` and `redirects_on_client_id_domain` are required attributes of the
    // schema's Client: a policy naming them must decide, not fail closed.
    let policies = bundle(&[(
        "loopback.cedar",
        "@id(\"native\")\npermit (principal, action, resource) when { principal.loopback_only && !principal.redirects_on_client_id_domain };\n",
    )]);
    let native = policies.decide(
        &signals(
            r#"{"client_name":"CLI","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#,
            "default",
            &[],
        ),
        "fp",
        false,
    );
    assert_eq!(native.decision, Decision::Approve, "{:?}", native.findings);
    let web = policies.decide(
        &signals(
            r#"{"redirect_uris":["https://app.example.com/cb"]}"#,
            "default",
            &[],
        ),
        "fp",
        false,
    );
    assert_eq!(web.decision, Decision::Deny);
    assert!(
        web.findings.is_empty(),
        "a plain default deny: {:?}",
        web.findings
    );
}

#[test]
fn policies_see_what_the_tenants_authorization_server_supports() {
    let policies = bundle(&[(
        "p.cedar",
        r#"@id("approve_where_the_as_requires_pkce")
permit (principal, action, resource)
when {
  resource has authorization_server &&
  resource.authorization_server has code_challenge_methods_supported &&
  resource.authorization_server.code_challenge_methods_supported.contains("S256")
};"#,
    )]);
    let outcome = |tenant: &str| {
        policies
            .decide(&signals(WEB_CLIENT, tenant, &[]), "client", false)
            .decision
    };
    assert_eq!(outcome("example-capabilities"), Decision::Approve);
    assert_eq!(
        outcome("default"),
        Decision::Deny,
        "the default tenant does not say"
    );
    let capabilities = policies.capabilities("example-capabilities").unwrap();
    assert_eq!(
        capabilities.scopes_supported.as_deref().unwrap(),
        ["openid", "profile", "offline_access", "mcp:tools"]
    );
    assert!(policies.capabilities("undeclared").is_none());
}

#[test]
fn policies_name_a_recognized_client_by_membership_and_by_attribute() {
    let policies = bundle(&[
        (
            "known-clients.toml",
            include_str!("../../policies/known-clients.toml"),
        ),
        (
            "p.cedar",
            r#"@id("cursor_by_membership")
permit (principal in KnownClient::"cursor", action, resource);
@id("anysphere_by_attribute")
permit (principal, action, resource)
when { principal has known_client && principal.known_client.publisher_domain == "cursor.com" };"#,
        ),
    ]);
    let cursor = r#"{"client_name":"Cursor","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}"#;
    // As the engine does: the registry recognizes the registration once, and the signals
    // carry what it found.
    let decide = |policies: &PolicyBundle, metadata: &str| {
        let mut signals = signals(metadata, "default", &[]);
        let recognition = policies
            .registry()
            .recognize(&crate::known_clients::Presented {
                client_id: None,
                client_name: signals.client_name.as_deref(),
                redirect_uris: &signals
                    .redirects
                    .iter()
                    .map(|r| r.uri.clone())
                    .collect::<Vec<_>>(),
                grant_types: &signals.grant_types,
            });
        signals.known_client = recognition.known_client;
        signals.impersonates_known_client = recognition.impersonates;
        policies.decide(&signals, "client", false)
    };
    let outcome = decide(&policies, cursor);
    assert_eq!(outcome.decision, Decision::Approve);
    assert_eq!(
        policy_ids(&outcome),
        vec!["cursor_by_membership", "anysphere_by_attribute"]
    );
    // Cursor's redirect under another name is not Cursor.
    let other = cursor.replace(r#""Cursor""#, r#""Other""#);
    assert_eq!(decide(&policies, &other).decision, Decision::Deny);
    assert_eq!(policies.registry().clients.len(), 14);
}

#[test]
fn the_principal_and_context_a_decision_builds_conform_to_the_schema() {
    // The decision path builds Cedar values without the schema (for speed): a value of the
    // wrong type would make every policy that reads it error, and the decision deny.
    let mut files = STARTER_POLICIES.to_vec();
    files.push((
        "known-clients.toml",
        include_str!("../../policies/known-clients.toml"),
    ));
    let policies = bundle(&files);
    let cursor = r#"{"client_name":"Cursor","client_uri":"https://cursor.com","redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","http://127.0.0.1:8080/cb"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"scope":"read write","contacts":["a@cursor.com"]}"#;
    let mut signals = signals(cursor, "default", &["admin_approval"]);
    signals.known_client = Some("cursor".to_owned());
    signals.duplicate_first_seen = Some(SystemTime::now());
    let inputs = policies.cedar_inputs(&signals, "client-1").unwrap();
    let principal = inputs
        .entities
        .get(&inputs.principal)
        .expect("the principal is added");
    let json = principal.to_json_value().unwrap();
    cedar_policy::Entity::from_json_value(json.clone(), Some(&policies.schema))
        .unwrap_or_else(|error| panic!("the principal does not fit the schema: {error}\n{json}"));
    assert_eq!(
        json["attrs"]["known_client"]["publisher_domain"],
        "cursor.com"
    );
    assert_eq!(
        json["attrs"]["scopes"],
        serde_json::json!(["read", "write"])
    );
    assert!(
        inputs
            .entities
            .is_ancestor_of(&entities::uid("KnownClient", "cursor"), &inputs.principal),
        "the principal is in its known client"
    );
    policies.check_context_shape(&signals).unwrap();
    let context = inputs.request.context().unwrap().to_json_value().unwrap();
    assert_eq!(
        context["completed_challenges"],
        serde_json::json!(["admin_approval"])
    );
    assert_eq!(context["rates"]["tenant"]["1h"], 0);
    assert!(context["now"]["__extn"]["fn"] == "datetime", "{context}");
    assert!(context["duplicate_first_seen"]["__extn"]["arg"].is_string());
}

#[test]
fn a_broken_registry_is_refused_like_a_broken_policy() {
    let errors = load_errors(&[(
        "known-clients.toml",
        "[[client]]\nid = \"x\"\nname = \"X\"\npublisher = \"P\"\npublisher_domain = \"p.example\"\nsource = \"s\"\nchecked = \"2026-01-01\"\n",
    )]);
    assert!(
        errors.contains("known-clients.toml") && errors.contains("says neither `cimd`"),
        "{errors}"
    );
}
