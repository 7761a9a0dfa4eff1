//! Stateful signals over gRPC: rate counts survive a restart, `duplicate_of` points at the
//! first approval, and the starter policies act on floods and repeats.

mod common;

use clientgate::proto::{Decision, EvaluateRequest, EvaluateResponse};
use common::*;
use serde_json::Value;

fn explained(response: &EvaluateResponse) -> Value {
    serde_json::from_str(&response.explain_json).expect("explain_json is JSON")
}

fn metadata(n: usize) -> String {
    format!(r#"{{"client_name":"Client {n}","redirect_uris":["https://app.example.com/cb{n}"]}}"#)
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_counts_survive_a_restart_and_dry_runs_count_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    for n in 0..4 {
        client
            .evaluate(dcr(&metadata(n), "198.51.100.4"))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let dry = EvaluateRequest {
            dry_run: true,
            ..dcr(&metadata(99), "198.51.100.4")
        };
        client.evaluate(dry).await.unwrap();
    }
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let restarted = Server::start(&starter_policies(), data.path(), &[]);
    let probe = EvaluateRequest {
        dry_run: true,
        explain: true,
        ..dcr(&metadata(100), "198.51.100.4")
    };
    let response = restarted
        .registration()
        .await
        .evaluate(probe)
        .await
        .unwrap()
        .into_inner();
    let rates = &explained(&response)["context"]["rates"];
    assert_eq!(rates["ip"]["1h"], 4, "{rates}");
    assert_eq!(rates["ip"]["1m"], 4, "{rates}");
    assert_eq!(rates["tenant"]["24h"], 4, "{rates}");
    assert_eq!(
        rates["fingerprint"]["24h"], 0,
        "a new registration has no repeats"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_registration_points_at_the_first_approval() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;

    let first = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision(), Decision::Approve);
    assert!(first.duplicate_of.is_empty());

    let second = client
        .evaluate(EvaluateRequest {
            explain: true,
            ..dcr(WEB_CLIENT, "203.0.113.8")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.duplicate_of, first.decision_id);
    assert_eq!(explained(&second)["context"]["duplicates"], 1);

    let third = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.9"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.decision(), Decision::Approve);
    // The fourth time the same registration is made today, an administrator looks.
    let fourth = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.10"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fourth.decision(), Decision::StepUp);
    assert_eq!(
        fourth.reasons[0].policy_id,
        "step_up_repeated_registrations"
    );
    assert_eq!(fourth.duplicate_of, first.decision_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_from_one_address_is_denied() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    for n in 0..20 {
        let response = client
            .evaluate(dcr(&metadata(n), "192.0.2.99"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.decision(), Decision::Approve, "registration {n}");
    }
    let flooded = client
        .evaluate(dcr(&metadata(20), "192.0.2.99"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(flooded.decision(), Decision::Deny);
    assert_eq!(
        flooded.reasons[0].policy_id,
        "deny_registration_floods_per_ip"
    );
    assert_eq!(flooded.error.unwrap().error, "invalid_client_metadata");
    let elsewhere = client
        .evaluate(dcr(&metadata(21), "192.0.2.100"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        elsewhere.decision(),
        Decision::Approve,
        "other addresses are not affected"
    );
}

/// Hosted clients register from shared egress addresses: claude.ai's registrations are
/// counted by the known client they are, across every IP, and their identical bodies are
/// its users, not repeats for an administrator.
#[tokio::test(flavor = "multi_thread")]
async fn a_known_clients_registrations_are_counted_by_identity_across_ips() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let claude = r#"{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"application_type":"web"}"#;
    for n in 1..=4 {
        let answer = client
            .evaluate(dcr(claude, &format!("203.0.113.{n}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.decision(), Decision::Approve, "{answer:?}");
    }
    let probe = client
        .evaluate(EvaluateRequest {
            dry_run: true,
            explain: true,
            ..dcr(claude, "198.51.100.200")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.decision(), Decision::Approve, "{probe:?}");
    let explained = explained(&probe);
    let rates = &explained["context"]["rates"];
    assert_eq!(rates["known_client"]["1h"], 4, "{rates}");
    assert_eq!(rates["ip"]["1h"], 0, "{rates}");
    assert_eq!(rates["fingerprint"]["24h"], 4, "{rates}");
    assert_eq!(
        explained["principal"]["attrs"]["known_client"]["id"], "claude-ai",
        "{explained}"
    );
}
