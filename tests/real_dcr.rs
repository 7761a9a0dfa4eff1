//! Registration bodies that real MCP clients sent (tests/fixtures/real-dcr, each record
//! names its source), decided by the starter policies on the default `mcp` profile: every
//! legitimate client is approved — with the consent screen, never a step-up, since a DCR
//! client registers once per user and nobody can approve every Cursor user — and nothing
//! abusive is approved silently.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clientgate::engine::{EvaluateInput, Evaluated, Registration, decide_dcr};
use clientgate::policy::load_policy_dir;
use clientgate::vocab::{Caller, Decision};

/// Legitimate clients: file, the obligations their approval carries.
const LEGITIMATE: &[(&str, &[&str])] = &[
    ("chatgpt.2026-04.json", &["require_consent"]),
    ("claude-ai-connectors.2026-08.json", &["require_consent"]),
    ("claude-code.2026-08.json", &["require_consent"]),
    ("codex.2026-04.json", &["require_consent"]),
    ("cursor-desktop.2026-04.json", &["require_consent"]),
    ("gemini-cli.2026-04.json", &["require_consent"]),
    ("mcp-inspector.2026-08.json", &["require_consent"]),
    ("vscode.2026-09.json", &["require_consent"]),
    ("cursor-agent-cli.2026-04.json", &["require_consent"]),
    ("windsurf.2026-04.json", &["require_consent"]),
    ("opencode.2026-09.json", &["require_consent"]),
];

/// Abusive registrations as their sources recorded them (placeholders and all).
const ABUSIVE: &[&str] = &[
    "abusive/attacker-https-redirect-code-theft.neon.2025-05.json",
    "abusive/js-scheme-redirect-xss.windmill.2026-05.json",
    "abusive/jwks-uri-ssrf.keycloak.2026-01.json",
    "abusive/js-scheme-redirect.fastmcp.2026-07.json",
    "abusive/lookalike-client-dangerous-schemes.keeperhub.2026-06.json",
];

/// The same attacks with their placeholders filled in as an attacker would.
const ABUSIVE_CONCRETE: &[(&str, &str)] = &[
    (
        "code theft through an https redirect on the attacker's domain, borrowing a known name",
        r#"{"client_name":"Claude","redirect_uris":["https://attacker.example/callback"]}"#,
    ),
    (
        "code theft through an https redirect, its client_uri on the same attacker domain",
        r#"{"client_name":"Helpful Tool","client_uri":"https://attacker.example",
            "redirect_uris":["https://attacker.example/callback"],"token_endpoint_auth_method":"none"}"#,
    ),
    (
        "stored XSS through a javascript: redirect",
        r#"{"client_name":"x","redirect_uris":["javascript:alert(document.cookie)"]}"#,
    ),
    (
        "SSRF through jwks_uri at the cloud metadata address",
        r#"{"client_name":"x","redirect_uris":["https://attacker.example/cb"],
            "token_endpoint_auth_method":"private_key_jwt",
            "jwks_uri":"https://169.254.169.254/latest/meta-data/"}"#,
    ),
    (
        "SSRF through jwks_uri on loopback over http",
        r#"{"client_name":"x","redirect_uris":["https://attacker.example/cb"],
            "token_endpoint_auth_method":"private_key_jwt","jwks_uri":"http://127.0.0.1:8080/admin"}"#,
    ),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-dcr")
}

/// The body the client sent: the exact request string when the source had one.
fn body_of(file: &str) -> String {
    let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    match record["observed_raw"].as_str() {
        Some(raw) => raw.to_owned(),
        None => record["observed"].to_string(),
    }
}

fn decide(body: &str) -> Evaluated {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = load_policy_dir(&root.join("policies")).expect("the starter policies load");
    let settings = clientgate::app::engine_settings(&clientgate::config::Config::default())
        .expect("default settings");
    let input = EvaluateInput {
        tenant: "default".to_owned(),
        registration: Registration::Dcr {
            metadata_json: body.to_owned(),
            initial_access_token: false,
        },
        caller: Caller::default(),
        step_up_ticket: String::new(),
        completed_challenges: Vec::new(),
        dry_run: true,
        explain: false,
    };
    decide_dcr(
        &policies,
        &settings,
        &input,
        body,
        false,
        None,
        SystemTime::now(),
    )
}

fn describe(evaluated: &Evaluated) -> String {
    let findings: Vec<String> = evaluated
        .findings
        .iter()
        .map(|f| format!("{:?} {} at {}", f.severity, f.code, f.field))
        .collect();
    format!(
        "{:?} with obligations {:?}, reasons {:?}, findings {findings:?}",
        evaluated.decision,
        evaluated.obligations,
        evaluated
            .reasons
            .iter()
            .map(|r| r.policy_id.as_str())
            .collect::<Vec<_>>()
    )
}

#[test]
fn every_legitimate_client_registration_is_approved_without_a_step_up() {
    let on_disk = std::fs::read_dir(fixtures())
        .unwrap()
        .filter(|entry| {
            let path = entry.as_ref().unwrap().path();
            path.extension().is_some_and(|e| e == "json")
        })
        .count();
    assert_eq!(
        on_disk,
        LEGITIMATE.len(),
        "every fixture has an expectation"
    );
    let mut failures = Vec::new();
    for (file, obligations) in LEGITIMATE {
        let evaluated = decide(&body_of(file));
        let errors = evaluated.findings.iter().any(|f| f.is_error());
        if evaluated.decision != Decision::Approve
            || evaluated.obligations != *obligations
            || errors
        {
            failures.push(format!("{file}: {}", describe(&evaluated)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Approved silently: approved with nothing that makes the AS show the user the client.
fn approved_silently(evaluated: &Evaluated) -> bool {
    evaluated.decision == Decision::Approve
        && !evaluated
            .obligations
            .iter()
            .any(|obligation| obligation == "require_consent")
}

#[test]
fn no_abusive_registration_is_approved_silently() {
    let on_disk = std::fs::read_dir(fixtures().join("abusive"))
        .unwrap()
        .count();
    assert_eq!(on_disk, ABUSIVE.len(), "every abusive fixture is tested");
    let mut failures = Vec::new();
    let recorded = ABUSIVE.iter().map(|file| (*file, body_of(file)));
    let concrete = ABUSIVE_CONCRETE
        .iter()
        .map(|(what, body)| (*what, (*body).to_owned()));
    for (what, body) in recorded.chain(concrete) {
        let evaluated = decide(&body);
        if approved_silently(&evaluated) {
            failures.push(format!("{what}: {}", describe(&evaluated)));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn script_and_ssrf_attacks_are_denied_by_validation_naming_the_member() {
    for (what, body, member) in [
        (
            ABUSIVE_CONCRETE[2].0,
            ABUSIVE_CONCRETE[2].1,
            "redirect_uris[0]",
        ),
        (ABUSIVE_CONCRETE[3].0, ABUSIVE_CONCRETE[3].1, "jwks_uri"),
        (ABUSIVE_CONCRETE[4].0, ABUSIVE_CONCRETE[4].1, "jwks_uri"),
    ] {
        let evaluated = decide(body);
        assert_eq!(evaluated.decision, Decision::Deny, "{what}");
        assert!(
            evaluated
                .findings
                .iter()
                .any(|f| f.is_error() && f.field == member),
            "{what}: {}",
            describe(&evaluated)
        );
    }
}

/// Which shipped registry entry each real registration is (`policies/known-clients.toml`).
const RECOGNIZED: &[(&str, &str)] = &[
    ("chatgpt.2026-04.json", "chatgpt"),
    ("claude-ai-connectors.2026-08.json", "claude-ai"),
    ("claude-code.2026-08.json", "claude-code"),
    ("codex.2026-04.json", "codex"),
    ("cursor-desktop.2026-04.json", "cursor"),
    ("gemini-cli.2026-04.json", "gemini-cli"),
    ("mcp-inspector.2026-08.json", "mcp-inspector"),
    ("vscode.2026-09.json", "vscode"),
    ("cursor-agent-cli.2026-04.json", "cursor"),
    ("windsurf.2026-04.json", "windsurf"),
    ("opencode.2026-09.json", "opencode"),
];

fn registry() -> clientgate::known_clients::Registry {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/known-clients.toml");
    clientgate::known_clients::Registry::parse(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|problems| panic!("{problems:#?}"))
}

#[test]
fn every_real_client_registration_is_recognized_by_the_shipped_registry() {
    assert_eq!(
        RECOGNIZED.len(),
        LEGITIMATE.len(),
        "every real client is listed"
    );
    let registry = registry();
    for (file, id) in RECOGNIZED {
        let body: serde_json::Value = serde_json::from_str(&body_of(file)).unwrap();
        let list = |name: &str| -> Vec<String> {
            body[name]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| i.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let recognition = registry.recognize(&clientgate::known_clients::Presented {
            client_id: None,
            client_name: body["client_name"].as_str(),
            redirect_uris: &list("redirect_uris"),
            grant_types: &list("grant_types"),
        });
        assert_eq!(recognition.known_client.as_deref(), Some(*id), "{file}");
        assert_eq!(recognition.impersonates, None, "{file}");
    }
}

#[test]
fn every_real_cimd_document_is_recognized_by_its_url() {
    let registry = registry();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-cimd");
    for (file, id) in [
        ("chatgpt.2026-09-08.json", "chatgpt"),
        ("cimd-dev.stytch.json", "cimd-dev"),
        ("claude-ai-connectors.2026-09-19.json", "claude-ai"),
        ("claude-code.2026-09-08.json", "claude-code"),
        ("codex.capture.json", "codex"),
        ("mcptest-io.json", "mcptest-io"),
        ("opencode.2026-09-07.json", "opencode"),
        ("vscode.2026-09-08.json", "vscode"),
        ("zed.proposed.json", "zed"),
    ] {
        let document: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join(file)).unwrap()).unwrap();
        let recognition = registry.recognize(&clientgate::known_clients::Presented {
            client_id: document["client_id"].as_str(),
            client_name: document["client_name"].as_str(),
            redirect_uris: &[],
            grant_types: &[],
        });
        assert_eq!(recognition.known_client.as_deref(), Some(id), "{file}");
        assert_eq!(recognition.impersonates, None, "{file}");
    }
}

#[test]
fn a_registration_borrowing_a_known_clients_name_is_held_for_an_administrator() {
    let borrowed = decide(ABUSIVE_CONCRETE[0].1);
    assert_eq!(
        borrowed.decision,
        Decision::StepUp,
        "{}",
        describe(&borrowed)
    );
    assert_eq!(
        borrowed.reasons[0].policy_id,
        "step_up_impersonated_known_clients"
    );
    // The real client under its own name and signature is not.
    let cursor = decide(&body_of("cursor-desktop.2026-04.json"));
    assert_eq!(cursor.decision, Decision::Approve, "{}", describe(&cursor));
}
