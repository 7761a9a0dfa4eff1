//! Two clientgate processes on one PostgreSQL database behave as one service: rate limits,
//! tickets, duplicates, the decision log and the CIMD cache are shared; with the database
//! gone decisions are UNAVAILABLE (never an approval) and service resumes by itself when
//! it returns; a replica killed with SIGKILL loses no acknowledged decision.

mod common;

use std::path::Path;
use std::time::Duration;

use clientgate::proto::step_up_service_client::StepUpServiceClient;
use clientgate::proto::{
    CimdRegistration, Decision, EvaluateRequest, EvaluateResponse, ListDecisionsRequest,
    ListStepUpsRequest, ResolveStepUpRequest, StepUpProof, StepUpState, evaluate_request,
};
use common::doc_server::{Behaviour, DocServer};
use common::postgres::Postgres;
use common::*;
use tonic::Code;

/// A clientgate on `postgres`, with `extra_args` (e.g. `--config`).
fn replica(postgres: &Postgres, data: &Path, extra_args: &[&str]) -> Server {
    let mut command = Server::command(&starter_policies(), data, extra_args);
    command
        .env("CLIENTGATE_STORE_BACKEND", "postgres")
        .env("CLIENTGATE_STORE_POSTGRES_URL", postgres.url());
    match Server::try_start_command(command) {
        Ok(server) => server,
        Err((status, log)) => panic!("the replica did not start ({status:?}):\n{log}"),
    }
}

/// A database and two replicas on it.
struct Pair {
    a: Server,
    b: Server,
    postgres: Postgres,
    _data: [tempfile::TempDir; 2],
}

fn pair(extra_args: &[&str]) -> Pair {
    let postgres = Postgres::start();
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = replica(&postgres, data[0].path(), extra_args);
    let b = replica(&postgres, data[1].path(), extra_args);
    Pair {
        a,
        b,
        postgres,
        _data: data,
    }
}

fn metadata(n: usize) -> String {
    format!(r#"{{"client_name":"Client {n}","redirect_uris":["https://app.example.com/cb{n}"]}}"#)
}

/// The first of 40 registrations from one address (through `servers` in turn) that is not
/// approved.
async fn first_refused(servers: &[&Server]) -> usize {
    let mut clients = Vec::new();
    for server in servers {
        clients.push(server.registration().await);
    }
    for n in 0..40 {
        let count = clients.len();
        let client = &mut clients[n % count];
        let response = client
            .evaluate(dcr(&metadata(n), "192.0.2.99"))
            .await
            .unwrap()
            .into_inner();
        if response.decision() != Decision::Approve {
            assert_eq!(
                response.reasons[0].policy_id, "deny_registration_floods_per_ip",
                "registration {n}: {response:?}"
            );
            return n;
        }
    }
    panic!("40 registrations from one address were all approved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_alternating_between_replicas_is_denied_at_the_same_count_as_through_one() {
    let alone = tempfile::tempdir().unwrap();
    let single = Server::start(&starter_policies(), alone.path(), &[]);
    let through_one = first_refused(&[&single]).await;

    let pair = pair(&[]);
    let through_two = first_refused(&[&pair.a, &pair.b]).await;
    assert_eq!(
        through_two, through_one,
        "the flood is refused at registration {through_one} through one clientgate"
    );
}

fn with_ticket(metadata: &str, ticket_id: &str) -> EvaluateRequest {
    EvaluateRequest {
        step_up: Some(StepUpProof {
            ticket_id: ticket_id.to_owned(),
            completed_challenges: Vec::new(),
        }),
        ..dcr(metadata, "203.0.113.7")
    }
}

fn approve(ticket_id: &str) -> ResolveStepUpRequest {
    ResolveStepUpRequest {
        ticket_id: ticket_id.to_owned(),
        approve: true,
        resolver: "ops@example.com".to_owned(),
        note: "checked".to_owned(),
    }
}

/// Opens a ticket for `metadata` on `server`.
async fn open_ticket(server: &Server, metadata: &str) -> String {
    let response = server
        .registration()
        .await
        .evaluate(dcr(metadata, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision(), Decision::StepUp, "{response:?}");
    response.step_up.unwrap().ticket_id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_opened_on_one_replica_is_resolved_on_the_other_and_redeemed_once() {
    let pair = pair(&[]);
    let ticket_id = open_ticket(&pair.a, CROSS_DOMAIN_CLIENT).await;

    let mut on_b = StepUpServiceClient::new(pair.b.channel().await);
    let pending = on_b
        .list_step_ups(ListStepUpsRequest {
            state: StepUpState::Pending as i32,
            ..ListStepUpsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = pending
        .step_ups
        .iter()
        .map(|t| t.ticket_id.as_str())
        .collect();
    assert_eq!(listed, [ticket_id.as_str()], "B lists the ticket A opened");
    on_b.resolve_step_up(approve(&ticket_id)).await.unwrap();

    let mut on_a = pair.a.registration().await;
    let redeemed = on_a
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.decision(), Decision::Approve, "{redeemed:?}");
    let again = pair
        .b
        .registration()
        .await
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        again.decision(),
        Decision::Approve,
        "a single-use ticket redeemed on A does not approve again on B"
    );

    // Two redemptions of one approved ticket at once, one on each replica: one approval.
    let other = CROSS_DOMAIN_CLIENT.replace("\"Example\"", "\"Example Two\"");
    let second_ticket = open_ticket(&pair.b, &other).await;
    on_b.resolve_step_up(approve(&second_ticket)).await.unwrap();
    let (mut client_a, mut client_b) = (pair.a.registration().await, pair.b.registration().await);
    let (from_a, from_b) = tokio::join!(
        client_a.evaluate(with_ticket(&other, &second_ticket)),
        client_b.evaluate(with_ticket(&other, &second_ticket)),
    );
    let approvals = [from_a.unwrap().into_inner(), from_b.unwrap().into_inner()]
        .iter()
        .filter(|response| response.decision() == Decision::Approve)
        .count();
    assert_eq!(
        approvals, 1,
        "exactly one of two simultaneous redemptions approves"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_names_the_decision_of_the_other_replica_and_both_list_both() {
    let pair = pair(&[]);
    let first = pair
        .a
        .registration()
        .await
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.decision(), Decision::Approve);
    let second = pair
        .b
        .registration()
        .await
        .evaluate(dcr(WEB_CLIENT, "203.0.113.8"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second.duplicate_of, first.decision_id,
        "B names A's decision"
    );

    for server in [&pair.a, &pair.b] {
        let listed = server
            .admin()
            .await
            .list_decisions(ListDecisionsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = listed
            .decisions
            .iter()
            .map(|d| d.decision_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [second.decision_id.as_str(), first.decision_id.as_str()]
        );
        assert!(
            listed
                .decisions
                .iter()
                .all(|d| d.policy_version == first.policy_version),
            "each decision shows the policy version it was decided under: {listed:?}"
        );
    }
}

fn cimd(client_id: &str) -> EvaluateRequest {
    EvaluateRequest {
        registration: Some(evaluate_request::Registration::Cimd(CimdRegistration {
            client_id: client_id.to_owned(),
            redirect_uri: String::new(),
        })),
        ..EvaluateRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_fetched_by_one_replica_is_served_from_the_shared_cache_by_the_other() {
    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = docs.write_config(config_dir.path(), true, "");
    let config_arg = config.display().to_string();
    let pair = pair(&["--config", &config_arg]);
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/real-cimd/claude-code.2026-09-08.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let client_id = json["client_id"].as_str().unwrap().to_owned();
    let rest = client_id.strip_prefix("https://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let path = format!("/{path}");
    docs.route(host, &path, Behaviour::json(body));

    let on_a: EvaluateResponse = pair
        .a
        .registration()
        .await
        .evaluate(cimd(&client_id))
        .await
        .unwrap()
        .into_inner();
    let on_b: EvaluateResponse = pair
        .b
        .registration()
        .await
        .evaluate(cimd(&client_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_a.cimd.unwrap().cache, "miss");
    assert_eq!(on_b.cimd.unwrap().cache, "hit", "B uses what A fetched");
    assert_eq!(
        docs.seen(host, &path).len(),
        1,
        "one fetch for both replicas"
    );
    assert_eq!(on_a.decision, on_b.decision);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_database_decisions_are_unavailable_and_resume_when_it_returns() {
    let mut pair = pair(&[]);
    let mut client = pair.a.registration().await;
    let before = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .unwrap();
    assert_eq!(before.into_inner().decision(), Decision::Approve);

    pair.postgres.halt();
    let refused = client
        .evaluate(dcr(LOOPBACK_CLIENT, "203.0.113.7"))
        .await
        .expect_err("no decision without the database");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let health = health_status(&pair.a).await;
    assert_eq!(health, "NOT_SERVING", "health follows the database");

    pair.postgres.resume();
    let mut resumed = None;
    for _ in 0..100 {
        match client.evaluate(dcr(LOOPBACK_CLIENT, "203.0.113.9")).await {
            Ok(response) => {
                resumed = Some(response.into_inner());
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let resumed = resumed.expect("decisions resume within 10 s of the database returning");
    assert_ne!(resumed.decision(), Decision::Unspecified);
    let mut serving = String::new();
    for _ in 0..50 {
        serving = health_status(&pair.a).await;
        if serving == "SERVING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serving, "SERVING");
    drop(pair.b);
}

/// The decision service's health, by name.
async fn health_status(server: &Server) -> String {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut status = String::new();
    // The probe runs every second: give it two.
    for _ in 0..25 {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        status = answer.status().as_str_name().to_owned();
        if status == "NOT_SERVING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_with_sigkill_loses_no_acknowledged_decision() {
    let pair = pair(&[]);
    let mut acknowledged = Vec::new();
    let writers: Vec<_> = (0..4)
        .map(|lane| {
            let url = pair.a.url();
            tokio::spawn(async move {
                let mut client =
                    clientgate::proto::registration_service_client::RegistrationServiceClient::connect(url)
                        .await
                        .unwrap();
                let mut ids = Vec::new();
                for n in 0..500 {
                    let ip = format!("198.51.{lane}.{}", n % 250);
                    match client.evaluate(dcr(&metadata(n), &ip)).await {
                        Ok(response) => ids.push(response.into_inner().decision_id),
                        Err(_) => break,
                    }
                }
                ids
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pair.a.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "only {} decisions before the kill",
        acknowledged.len()
    );
    eprintln!(
        "{} decisions acknowledged before SIGKILL",
        acknowledged.len()
    );
    let mut admin = pair.b.admin().await;
    for id in &acknowledged {
        let found = admin
            .get_decision(clientgate::proto::GetDecisionRequest {
                decision_id: id.clone(),
            })
            .await;
        assert!(
            found.is_ok(),
            "acknowledged decision {id} was lost: {found:?}"
        );
    }
}

#[test]
fn clientgate_migrate_applies_the_schema_once_and_says_so() {
    let postgres = Postgres::start();
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
            .arg("migrate")
            .env("CLIENTGATE_STORE_BACKEND", "postgres")
            .env("CLIENTGATE_STORE_POSTGRES_URL", postgres.url())
            .output()
            .unwrap()
    };
    let first = migrate();
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("applied migrations [1]"), "{said}");
    let second = migrate();
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success());
    assert!(said.contains("nothing to apply"), "{said}");

    let sled = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .arg("migrate")
        .env_remove("CLIENTGATE_STORE_BACKEND")
        .output()
        .unwrap();
    assert_eq!(
        sled.status.code(),
        Some(2),
        "the embedded store needs no migration"
    );
    assert!(String::from_utf8_lossy(&sled.stderr).contains("store.backend"));
}
