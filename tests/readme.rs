//! Keeps the README true: its grpcurl walk-through is replayed against the real server and
//! must give exactly the decisions, reasons, errors and findings it shows; its example policy
//! must load beside the starter pack.

mod common;

use clientgate::proto::{Caller, DcrRegistration, EvaluateRequest, evaluate_request};
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
        if tag != "sh" || !text.contains("RegistrationService/Evaluate") {
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

#[tokio::test]
async fn the_grpcurl_walk_through_gives_the_decisions_it_shows() {
    let examples = evaluate_examples();
    assert_eq!(examples.len(), 4, "approve, two denies and a step-up");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    for (request, shown) in examples {
        let call = EvaluateRequest {
            tenant: request["tenant"].as_str().unwrap_or_default().to_owned(),
            registration: Some(evaluate_request::Registration::Dcr(DcrRegistration {
                metadata_json: request["dcr"]["metadata_json"].as_str().unwrap().to_owned(),
                initial_access_token: false,
            })),
            caller: Some(Caller {
                ip: request["caller"]["ip"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ..Caller::default()
            }),
            ..EvaluateRequest::default()
        };
        let got = client.evaluate(call).await.unwrap().into_inner();
        let label = shown["decision"].as_str().unwrap();
        assert_eq!(got.decision().as_str_name(), label);
        assert_eq!(
            got.reasons
                .iter()
                .map(|r| r.policy_id.clone())
                .collect::<Vec<_>>(),
            strings(&shown, "reasons", "policyId"),
            "{label}"
        );
        assert_eq!(
            got.reasons
                .iter()
                .map(|r| r.message.clone())
                .collect::<Vec<_>>(),
            strings(&shown, "reasons", "message"),
            "{label}"
        );
        assert_eq!(
            got.findings
                .iter()
                .map(|f| f.code.clone())
                .collect::<Vec<_>>(),
            strings(&shown, "findings", "code"),
            "{label}"
        );
        assert_eq!(
            got.error.map(|e| e.error).unwrap_or_default(),
            shown["error"]["error"].as_str().unwrap_or_default(),
            "{label}"
        );
        let challenges: Vec<String> = shown["stepUp"]["challenges"]
            .as_array()
            .map(|c| c.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(
            got.step_up.map(|s| s.challenges).unwrap_or_default(),
            challenges
        );
        assert_eq!(
            got.policy_version,
            shown["policyVersion"].as_str().unwrap(),
            "{label}"
        );
    }
}

#[test]
fn the_example_policy_loads_beside_the_starter_pack() {
    let example = blocks()
        .into_iter()
        .find(|(tag, _)| tag == "cedar")
        .map(|(_, text)| text)
        .expect("the README has a Cedar example");
    let policies = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(starter_policies()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(policies.path().join("90-example.cedar"), example).unwrap();
    let loaded = clientgate::policy::load_policy_dir(policies.path())
        .unwrap_or_else(|errors| panic!("the README example does not load:\n{errors}"));
    assert!(loaded.info("consent_outside_office").is_some());
}
