//! Real MCP clients' published metadata (tests/fixtures/real-cimd, sources in SOURCES.md)
//! sent as DCR bodies: each gets the decision the starter policies intend (every DCR
//! approval nobody vouches for carries `require_consent`). Catches the
//! real-world failures of registration rules C.4: port-less `localhost` redirects, extra
//! grant types, `private_key_jwt` with `jwks_uri`.

use std::path::Path;
use std::time::SystemTime;

use clientgate::engine::{EvaluateInput, Registration, decide_dcr};
use clientgate::policy::load_policy_dir;
use clientgate::vocab::Caller;
use clientgate::vocab::Decision;

/// File, decision, obligations.
const EXPECTED: &[(&str, Decision, &[&str])] = &[
    (
        "chatgpt.2026-09-08.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        // CIMD.dev and mcptest.io register by CIMD only (policies/known-clients.toml):
        // their names on a DCR body are an impersonation.
        "cimd-dev.stytch.json",
        Decision::StepUp,
        &[],
    ),
    (
        "claude-ai-connectors.2026-09-19.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "claude-code.2026-08-04.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "claude-code.2026-09-08.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "codex.capture.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "mcp-spec-2025-11-25-example.json",
        Decision::Approve,
        &["require_consent"],
    ),
    ("mcptest-io.json", Decision::StepUp, &[]),
    (
        "opencode.2026-09-07.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "vscode.2026-02-17.json",
        Decision::Approve,
        &["require_consent"],
    ),
    (
        "vscode.2026-09-08.json",
        Decision::Approve,
        &["require_consent"],
    ),
    ("zed.proposed.json", Decision::Approve, &["require_consent"]),
];

#[test]
fn every_real_client_document_registered_by_dcr_gets_the_intended_decision() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = load_policy_dir(&root.join("policies")).expect("the starter policies load");
    let settings = clientgate::app::engine_settings(&clientgate::config::Config::default())
        .expect("default settings");
    let fixtures = root.join("tests/fixtures/real-cimd");
    let on_disk = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "json")
        })
        .count();
    assert_eq!(
        on_disk,
        EXPECTED.len(),
        "every fixture has an expected decision"
    );

    let mut failures = Vec::new();
    for (file, decision, obligations) in EXPECTED {
        let metadata = std::fs::read_to_string(fixtures.join(file)).unwrap();
        let input = EvaluateInput {
            tenant: "default".to_owned(),
            registration: Registration::Dcr {
                metadata_json: metadata.clone(),
                initial_access_token: false,
            },
            caller: Caller::default(),
            step_up_ticket: String::new(),
            completed_challenges: Vec::new(),
            dry_run: true,
            explain: false,
        };
        let evaluated = decide_dcr(
            &policies,
            &settings,
            &input,
            &metadata,
            false,
            None,
            SystemTime::now(),
        );
        let errors: Vec<_> = evaluated.findings.iter().filter(|f| f.is_error()).collect();
        if evaluated.decision != *decision
            || evaluated.obligations != *obligations
            || !errors.is_empty()
        {
            failures.push(format!(
                "{file}: got {:?} with obligations {:?}, errors {errors:?}, reasons {:?}",
                evaluated.decision, evaluated.obligations, evaluated.reasons
            ));
        }
        // The client_id a CIMD document carries is the AS's to issue under DCR (E15).
        assert!(
            !evaluated.client_metadata_json.contains("\"client_id\""),
            "{file}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
