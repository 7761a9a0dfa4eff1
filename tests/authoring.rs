//! The policy author's commands as a user runs them: exit statuses and output of
//! `clientgate check`, `eval` and `test`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{starter_copy, starter_policies};

fn clientgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the clientgate binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `clientgate check` on `dir` once `name` holds `policy`.
fn check_with(dir: &tempfile::TempDir, name: &str, policy: &str) -> Output {
    std::fs::write(dir.path().join(name), policy).unwrap();
    clientgate(&["check", "--policies", path(dir.path())])
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn check_passes_the_starter_pack() {
    let output = clientgate(&["check", "--policies", path(&starter_policies())]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ok, 15 policies"), "{stdout}");
    assert!(stdout.contains("0 warning(s)"), "{stdout}");
}

#[test]
fn check_shows_a_syntax_error_with_its_line_and_a_caret() {
    let dir = starter_copy();
    let output = check_with(
        &dir,
        "40-broken.cedar",
        "@id(\"broken\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen { principal.redirect_kinds.contains(\"https\") && };\n",
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("40-broken.cedar:4:"), "{stderr}");
    assert!(
        stderr.contains("4 | when { principal.redirect_kinds.contains(\"https\") && };"),
        "the offending line is shown:\n{stderr}"
    );
    assert!(stderr.contains("  |") && stderr.contains('^'), "{stderr}");
    assert!(stderr.contains("nothing was loaded"), "{stderr}");
}

#[test]
fn check_refuses_unknown_obligations_and_warns_of_reasonless_forbids() {
    let dir = starter_copy();
    let output = check_with(
        &dir,
        "40-extra.cedar",
        "@id(\"quiet_forbid\")\nforbid (principal, action == Action::\"register_dcr\", resource)\nwhen { principal.redirect_kinds.contains(\"private_scheme\") };\n",
    );
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "a warning is not an error: {stderr}"
    );
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("`quiet_forbid` is a forbid without `@reason`"),
        "{stderr}"
    );

    let output = check_with(
        &dir,
        "40-extra.cedar",
        "@id(\"typo\")\n@reason(\"r\")\n@obligation(\"require_concent\")\npermit (principal, action, resource);\n",
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("40-extra.cedar:1: policy `typo`: obligation `require_concent` is not one"),
        "{stderr}"
    );
}

#[test]
fn eval_decides_a_dcr_body_offline_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(
        &body,
        r#"{"client_name":"Borrowed","client_uri":"https://famous.example","redirect_uris":["https://elsewhere.example.net/cb"]}"#,
    )
    .unwrap();
    let policies = starter_policies();
    let output = clientgate(&[
        "eval",
        "--policies",
        path(&policies),
        "--dcr",
        path(&body),
        "--ip",
        "203.0.113.7",
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "STEP_UP exits 4: {stderr}");
    assert!(stdout.starts_with("decision: STEP_UP\n"), "{stdout}");
    assert!(
        stdout.contains("reason: step_up_cross_domain_redirects: the redirect URIs are on another domain than client_uri"),
        "{stdout}"
    );
    assert!(
        stdout.contains("step-up challenges: admin_approval"),
        "{stdout}"
    );

    let output = clientgate(&[
        "eval",
        "--policies",
        path(&policies),
        "--dcr",
        path(&body),
        "--explain",
        "--json",
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(json["decision"], "STEP_UP");
    assert_eq!(json["step_up_challenges"][0], "admin_approval");
    assert_eq!(
        json["explain"]["principal"]["attrs"]["client_uri_domain"], "famous.example",
        "{json}"
    );
}

#[test]
fn eval_decides_a_cimd_client_from_a_supplied_document() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-cimd/claude-code.2026-09-08.json");
    let output = clientgate(&[
        "eval",
        "--policies",
        path(&starter_policies()),
        "--cimd",
        "https://claude.ai/oauth/claude-code-client-metadata",
        "--document",
        path(&fixture),
        "--redirect-uri",
        "http://127.0.0.1:4711/callback",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("decision: APPROVE\n"), "{stdout}");
    assert!(stdout.contains("obligations: require_consent"), "{stdout}");

    let output = clientgate(&[
        "eval",
        "--policies",
        path(&starter_policies()),
        "--cimd",
        "https://evil.example/claude.json",
        "--document",
        path(&fixture),
    ]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(3), "DENY exits 3");
    assert!(
        stdout.starts_with("decision: DENY\n"),
        "a document whose client_id differs from the URL is refused:\n{stdout}"
    );
    assert!(stdout.contains("client_id_mismatch"), "{stdout}");
}

#[test]
fn check_runs_beside_another_programs_clientgate_variables() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["check", "--policies", path(&starter_policies())])
        .env("CLIENTGATE_ADDR", "127.0.0.1:50051")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(": ok, "), "{stdout}");
    assert!(
        stderr
            .contains("warning: environment: `CLIENTGATE_ADDR`: not a clientgate setting; ignored"),
        "{stderr}"
    );
}

#[test]
fn eval_needs_a_registration() {
    let output = clientgate(&["eval", "--policies", path(&starter_policies())]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn the_starter_suite_passes_and_exercises_every_policy() {
    let output = clientgate(&["test", "--policies", path(&starter_policies())]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with("28 passed, 0 failed\n"), "{stdout}");

    let suite = std::fs::read_to_string(starter_policies().join("tests/starter.toml")).unwrap();
    for file in std::fs::read_dir(starter_policies()).unwrap() {
        let file = file.unwrap().path();
        if file.extension().is_none_or(|ext| ext != "cedar") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for id in text.split("@id(\"").skip(1) {
            let id = &id[..id.find('"').unwrap()];
            assert!(
                suite.contains(&format!("reasons = [\"{id}\""))
                    || suite.contains(&format!("\"{id}\"]"))
                    || suite.contains(&format!("\"{id}\",")),
                "no starter test case expects `{id}` among its reasons"
            );
        }
    }
}

#[test]
fn a_failing_case_prints_its_diff_exits_1_and_lands_in_junit() {
    let dir = starter_copy();
    let suite = dir.path().join("tests/starter.toml");
    let original = std::fs::read_to_string(&suite).unwrap();
    let broken = original.replace(
        r#"rates = { ip = { "1h" = 19 } }"#,
        r#"rates = { ip = { "1h" = 25 } }"#,
    );
    assert_ne!(
        broken, original,
        "the suite still has the case this test breaks"
    );
    std::fs::write(&suite, broken).unwrap();
    let junit = dir.path().join("junit.xml");
    let output = clientgate(&[
        "test",
        "--policies",
        path(dir.path()),
        "--junit",
        path(&junit),
    ]);
    let (stdout, _) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL starter.toml › nineteen registrations from one IP address in an hour are not a flood\n    decision: expected approve, got deny (reasons: deny_registration_floods_per_ip)"),
        "{stdout}"
    );
    assert!(stdout.ends_with("27 passed, 1 failed\n"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testsuites name="clientgate policy tests" tests="28" failures="1">"#),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"decision: expected approve, got deny"),
        "{xml}"
    );
}

#[test]
fn check_refuses_rate_windows_the_schema_does_not_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["check", "--policies", path(&starter_policies())])
        .env("CLIENTGATE_RATES_WINDOWS_SECS", "60,7200")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("schema.cedarschema: the decision context does not fit the schema"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(`rates.windows_secs`: 1m, 2h)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_fetches_a_cimd_document_with_the_guarded_fetcher() {
    use common::doc_server::{Behaviour, DocServer};
    let docs = DocServer::start().await;
    let document = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/real-cimd/claude-code.2026-09-08.json"),
    )
    .unwrap();
    docs.route(
        "claude.ai",
        "/oauth/claude-code-client-metadata",
        Behaviour::json(document),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = docs.write_config(dir.path(), true, "");
    let policies = starter_policies();
    let output = tokio::task::spawn_blocking(move || {
        clientgate(&[
            "eval",
            "--policies",
            path(&policies),
            "--config",
            config.to_str().unwrap(),
            "--cimd",
            "https://claude.ai/oauth/claude-code-client-metadata",
            "--json",
        ])
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["decision"], "APPROVE", "{json}");
    assert_eq!(json["client_metadata"]["client_name"], "Claude Code");
}

#[test]
fn bench_times_the_suites_registrations_and_prints_figures() {
    let output = clientgate(&[
        "bench",
        "--policies",
        path(&starter_policies()),
        "--decisions",
        "300",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    let expected_end = format!(
        "28 registrations from {}, 300 decisions",
        starter_policies().join("tests").display()
    );
    assert!(
        first.starts_with("15 policies (version ") && first.ends_with(&expected_end),
        "{stdout}"
    );
    let figures = stdout.lines().nth(1).unwrap_or_default();
    let number = |label: &str| -> u64 {
        let rest = &figures[figures
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {figures}"))
            + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(number("p50 ") <= number("p99 "), "{figures}");
    assert!(number("p99 ") <= number("max "), "{figures}");
    assert!(figures.contains("decisions/s on one thread"), "{figures}");
}

#[test]
fn check_warns_of_a_policy_that_can_never_apply() {
    let dir = starter_copy();
    let output = check_with(
        &dir,
        "40-never.cedar",
        "@id(\"never\")\n@reason(\"r\")\nforbid (principal, action == Action::\"register_dcr\", resource == Client::\"x\");\n",
    );
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "a warning is not an error: {stderr}"
    );
    assert!(
        stderr.contains("warning: ")
            && stderr.contains(
                "40-never.cedar:1:1: for policy `never`, unable to find an applicable action"
            ),
        "{stderr}"
    );
    assert!(stdout.contains("ok, 16 policies"), "{stdout}");
}

#[test]
fn registry_show_prints_a_known_client_and_an_unknown_id_exits_2() {
    let output = clientgate(&[
        "registry",
        "show",
        "chatgpt",
        "--policies",
        path(&starter_policies()),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for line in [
        "id: chatgpt\n",
        "publisher: OpenAI (openai.com)\n",
        "cimd: https://chatgpt.com/oauth/{cb}/client.json\n",
        "dcr redirect: https://chatgpt.com/connector_platform_oauth_redirect\n",
        "checked: 2026-12-01\n",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    let listed = clientgate(&["registry", "list", "--policies", path(&starter_policies())]);
    let (stdout, _) = text(&listed);
    assert_eq!(stdout.lines().count(), 14, "{stdout}");
    let unknown = clientgate(&[
        "registry",
        "show",
        "nope",
        "--policies",
        path(&starter_policies()),
    ]);
    let (_, stderr) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr.contains("no known client `nope`"), "{stderr}");
}
