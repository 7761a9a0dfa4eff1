//! Keeps the README true: its grpcurl walk-through is replayed against the real server and
//! must give exactly the decisions, reasons, errors and findings it shows; its example policy
//! must load beside the starter pack.

mod common;

use clientgate::proto::step_up_service_client::StepUpServiceClient;
use clientgate::proto::{
    Caller, CimdRegistration, DcrRegistration, EvaluateRequest, EvaluateResponse,
    ResolveStepUpRequest, StepUpProof, evaluate_request,
};
use common::doc_server::{Behaviour, DocServer};
use common::*;
use serde_json::Value;

const README: &str = include_str!("../README.md");

/// The fenced blocks of the README, with their language tag.
fn blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in README.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(tag)) => current = Some((tag.to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(current.take().unwrap()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// Each Evaluate call of the walk-through with the response shown after it.
fn evaluate_examples() -> Vec<(Value, Value)> {
    let blocks = blocks();
    let mut examples = Vec::new();
    for (index, (tag, text)) in blocks.iter().enumerate() {
        // A call shown with its JSON response (the "Callers and roles" example shows
        // refusals instead, checked by its own test).
        let answered = blocks.get(index + 1).is_some_and(|(tag, _)| tag == "json");
        if tag != "sh" || !text.contains("RegistrationService/Evaluate") || !answered {
            continue;
        }
        let body = text
            .split_once("-d '")
            .and_then(|(_, rest)| rest.split_once("}' "))
            .map(|(body, _)| format!("{body}}}"))
            .expect("a -d '…' request body");
        let request: Value = serde_json::from_str(&body).expect("the request body is JSON");
        let (_, shown) = &blocks[index + 1];
        let response: Value = serde_json::from_str(shown).expect("the response shown is JSON");
        examples.push((request, response));
    }
    examples
}

fn strings(value: &Value, list: &str, field: &str) -> Vec<String> {
    value[list]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item[field].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The call a README request body describes.
fn call(request: &Value) -> EvaluateRequest {
    let registration = if request["cimd"].is_object() {
        evaluate_request::Registration::Cimd(CimdRegistration {
            client_id: request["cimd"]["client_id"].as_str().unwrap().to_owned(),
            redirect_uri: request["cimd"]["redirect_uri"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    } else {
        evaluate_request::Registration::Dcr(DcrRegistration {
            metadata_json: request["dcr"]["metadata_json"].as_str().unwrap().to_owned(),
            initial_access_token: false,
        })
    };
    EvaluateRequest {
        tenant: request["tenant"].as_str().unwrap_or_default().to_owned(),
        registration: Some(registration),
        caller: Some(Caller {
            ip: request["caller"]["ip"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ..Caller::default()
        }),
        step_up: request["step_up"]["ticket_id"]
            .as_str()
            .map(|ticket_id| StepUpProof {
                ticket_id: ticket_id.to_owned(),
                completed_challenges: Vec::new(),
            }),
        ..EvaluateRequest::default()
    }
}

/// Everything the README shows that does not change from run to run.
fn assert_shown(got: EvaluateResponse, shown: &Value) {
    let label = shown["decision"].as_str().unwrap();
    assert_eq!(got.decision().as_str_name(), label);
    let pairs = [
        (
            got.reasons
                .iter()
                .map(|r| r.policy_id.clone())
                .collect::<Vec<_>>(),
            strings(shown, "reasons", "policyId"),
        ),
        (
            got.reasons.iter().map(|r| r.message.clone()).collect(),
            strings(shown, "reasons", "message"),
        ),
        (
            got.findings.iter().map(|f| f.code.clone()).collect(),
            strings(shown, "findings", "code"),
        ),
        (got.obligations.clone(), as_strings(&shown["obligations"])),
        (
            got.step_up
                .clone()
                .map(|s| s.challenges)
                .unwrap_or_default(),
            as_strings(&shown["stepUp"]["challenges"]),
        ),
    ];
    for (got_list, shown_list) in pairs {
        assert_eq!(got_list, shown_list, "{label}");
    }
    assert_eq!(
        got.error.map(|e| e.error).unwrap_or_default(),
        shown["error"]["error"].as_str().unwrap_or_default(),
        "{label}"
    );
    assert_eq!(
        got.policy_version,
        shown["policyVersion"].as_str().unwrap(),
        "{label}"
    );
    if let Some(cimd) = shown["cimd"].as_object() {
        let info = got.cimd.expect("a CIMD decision carries cache facts");
        assert_eq!(info.cache, cimd["cache"].as_str().unwrap(), "{label}");
        assert_eq!(
            info.document_sha256,
            cimd["documentSha256"].as_str().unwrap(),
            "{label}"
        );
    }
}

fn as_strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The token of the walk-through's `clientgate token new --name alice@example.com --role
/// evaluate --role admin`.
const WALK_THROUGH_TOKEN: &str = "cg_readme-walk-through-token";

/// The walk-through's `clientgate.toml`: the `[[auth.tokens]]` table of its token.
fn walk_through_tokens() -> String {
    use sha2::{Digest, Sha256};
    format!(
        "[[auth.tokens]]\nname = \"alice@example.com\"\nsha256 = \"{}\"\nroles = [\"evaluate\", \"admin\"]\n",
        hex::encode(Sha256::digest(WALK_THROUGH_TOKEN.as_bytes()))
    )
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[test]
fn every_grpcurl_call_of_the_readme_sends_a_token() {
    let calls: Vec<String> = blocks()
        .into_iter()
        .filter(|(tag, _)| tag == "sh")
        .flat_map(|(_, text)| {
            text.lines()
                .filter(|line| line.trim_start().starts_with("grpcurl "))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(calls.len() >= 14, "the walk-through's calls: {calls:#?}");
    for call in &calls {
        assert!(
            call.contains(r#"-H "authorization: Bearer $TOKEN""#),
            "a README call without the token fails on a server with [auth]: {call}"
        );
    }
}

/// The JSON the README shows after its `ResolveStepUp` call.
fn shown_resolution() -> Value {
    let blocks = blocks();
    let at = blocks
        .iter()
        .position(|(tag, text)| tag == "sh" && text.contains("StepUpService/ResolveStepUp"))
        .expect("the README resolves a ticket");
    serde_json::from_str(&blocks[at + 1].1).expect("the resolution shown is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpcurl_walk_through_gives_the_decisions_it_shows() {
    let (cimd, dcr): (Vec<_>, Vec<_>) = evaluate_examples()
        .into_iter()
        .partition(|(request, _)| request["cimd"].is_object());
    assert_eq!(
        dcr.len(),
        5,
        "DCR: approve, two denies, a step-up and its approval"
    );
    assert_eq!(cimd.len(), 2, "CIMD: an approve and a step-up");

    // The walk-through's server: the starter policies and `clientgate.toml` with its token.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("clientgate.toml");
    std::fs::write(&config, walk_through_tokens()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut client = server.registration().await;
    let mut step_ups = StepUpServiceClient::new(server.channel().await);
    let mut last_ticket = String::new();
    for (request, shown) in &dcr {
        let mut call = call(request);
        if let Some(proof) = call.step_up.as_mut() {
            // The README's ticket id is from another run: approve this run's ticket, as the
            // walk-through does (no `resolver`: the token says who), and present it.
            let resolved = step_ups
                .resolve_step_up(with_token(
                    ResolveStepUpRequest {
                        ticket_id: last_ticket.clone(),
                        approve: true,
                        resolver: String::new(),
                        note: "callbacks.example.net is our vendor".to_owned(),
                    },
                    WALK_THROUGH_TOKEN,
                ))
                .await
                .unwrap()
                .into_inner();
            let shown = shown_resolution();
            assert_eq!(resolved.resolver, shown["resolver"].as_str().unwrap());
            assert_eq!(resolved.note, shown["note"].as_str().unwrap());
            assert_eq!(
                resolved.state().as_str_name(),
                shown["state"].as_str().unwrap()
            );
            proof.ticket_id = last_ticket.clone();
        }
        let response = client
            .evaluate(with_token(call, WALK_THROUGH_TOKEN))
            .await
            .unwrap()
            .into_inner();
        if let Some(step_up) = &response.step_up {
            last_ticket = step_up.ticket_id.clone();
        }
        assert_shown(response, shown);
    }

    // The CIMD walk-through runs against the example document server's documents, with the
    // token appended to the configuration it writes.
    let docs = DocServer::start().await;
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-cimd");
    for file in ["claude-code.2026-09-08.json", "opencode.2026-09-07.json"] {
        let body = std::fs::read(fixtures.join(file)).unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        let client_id = json["client_id"].as_str().unwrap();
        let (host, path) = client_id
            .strip_prefix("https://")
            .unwrap()
            .split_once('/')
            .unwrap();
        docs.route(host, &format!("/{path}"), Behaviour::json(body.clone()));
    }
    let cimd_config_dir = tempfile::tempdir().unwrap();
    let cimd_config = docs
        .write_config(cimd_config_dir.path(), true, &walk_through_tokens())
        .display()
        .to_string();
    let cimd_data = tempfile::tempdir().unwrap();
    let cimd_server = Server::start(
        &starter_policies(),
        cimd_data.path(),
        &["--config", &cimd_config],
    );
    let mut client = cimd_server.registration().await;
    for (request, shown) in &cimd {
        assert_shown(
            client
                .evaluate(with_token(call(request), WALK_THROUGH_TOKEN))
                .await
                .unwrap()
                .into_inner(),
            shown,
        );
    }
}

#[test]
fn every_example_policy_loads_beside_the_starter_pack_without_warnings() {
    let examples: Vec<String> = blocks()
        .into_iter()
        .filter(|(tag, _)| tag == "cedar")
        .map(|(_, text)| text)
        .collect();
    assert!(examples.len() >= 3, "the README has its Cedar examples");
    let policies = starter_copy();
    for (n, example) in examples.iter().enumerate() {
        std::fs::write(policies.path().join(format!("9{n}-example.cedar")), example).unwrap();
    }
    let loaded = clientgate::policy::load_policy_dir(policies.path())
        .unwrap_or_else(|errors| panic!("a README example does not load:\n{errors}"));
    for id in [
        "consent_outside_office",
        "deny_cimd_bursts_per_domain",
        "approve_partner_software",
    ] {
        assert!(loaded.info(id).is_some(), "{id} is loaded");
    }
    assert!(
        loaded.warnings.is_empty(),
        "the examples are clean: {:?}",
        loaded.warnings
    );
}

/// The `text` blocks that show `clientgate eval` or `clientgate test` on the repository as
/// shipped: the command after `$ `, then what it prints.
fn shown_commands() -> Vec<(Vec<String>, String)> {
    blocks()
        .into_iter()
        .filter(|(tag, _)| tag == "text")
        .filter_map(|(_, text)| {
            let (command, output) = text.split_once('\n')?;
            let args: Vec<String> = command
                .strip_prefix("$ clientgate ")?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some((args, output.to_owned()))
        })
        .filter(|(args, output)| {
            (args[0] == "eval" || args[0] == "test") && !output.contains("FAIL ")
        })
        .collect()
}

#[test]
fn the_eval_and_test_examples_print_what_the_readme_shows() {
    let shown = shown_commands();
    assert!(
        shown.iter().any(|(args, _)| args[0] == "eval")
            && shown.iter().any(|(args, _)| args[0] == "test"),
        "the README shows an eval and a test run: {shown:?}"
    );
    for (args, expected) in shown {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            expected,
            "`clientgate {}` prints otherwise than the README shows ({:?}; stderr: {})",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The refusals the README shows under "Callers and roles": `(call, code, message)`.
fn shown_refusals() -> Vec<(String, String, String)> {
    let block = blocks()
        .into_iter()
        .find(|(tag, text)| tag == "text" && text.starts_with("without the header, Evaluate:"))
        .expect("the README shows the refusals")
        .1;
    let lines: Vec<&str> = block.lines().collect();
    lines
        .chunks(3)
        .map(|chunk| {
            let field = |line: &str, name: &str| {
                line.trim()
                    .strip_prefix(name)
                    .unwrap_or_else(|| panic!("`{line}` lacks `{name}`"))
                    .to_owned()
            };
            (
                chunk[0].trim_end_matches(':').to_owned(),
                field(chunk[1], "Code: "),
                field(chunk[2], "Message: "),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_and_roles_example_gives_the_refusals_it_shows() {
    use sha2::{Digest, Sha256};
    let token = "readme-example-token-1";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"as-prod\"\nsha256 = \"{}\"\nroles = [\"evaluate\"]\n",
            hex::encode(Sha256::digest(token.as_bytes()))
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let body = r#"{"redirect_uris":["https://app.example.com/cb"]}"#;
    let mut registration = server.registration().await;
    registration
        .evaluate(with_token(dcr(body, ""), token))
        .await
        .expect("the AS's token is let in");
    let without = registration.evaluate(dcr(body, "")).await.unwrap_err();
    let mut step_ups = StepUpServiceClient::new(server.channel().await);
    let resolving = step_ups
        .resolve_step_up(with_token(
            ResolveStepUpRequest {
                ticket_id: "01JDQ8ZK2M4X7B9C3D5E6F7G8J".to_owned(),
                approve: true,
                resolver: String::new(),
                note: String::new(),
            },
            token,
        ))
        .await
        .unwrap_err();
    let got = [
        ("without the header, Evaluate", without),
        ("with $TOKEN, ResolveStepUp", resolving),
    ];
    let shown = shown_refusals();
    assert_eq!(shown.len(), got.len());
    for ((call, code, message), (expected_call, status)) in shown.iter().zip(got) {
        assert_eq!(call, expected_call);
        assert_eq!(code, &format!("{:?}", status.code()), "{call}");
        assert_eq!(message, status.message(), "{call}");
    }
}
