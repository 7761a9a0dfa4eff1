//! The step-up round trip over gRPC: Evaluate → STEP_UP → ResolveStepUp → Evaluate with the
//! ticket → APPROVE; and every way a ticket can fail to approve.

mod common;

use std::time::Duration;

use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::step_up_service_client::StepUpServiceClient;
use clientgate::proto::{
    Decision, EvaluateRequest, EvaluateResponse, GetStepUpRequest, ListStepUpsRequest,
    ResolveStepUpRequest, Severity, StepUp, StepUpProof, StepUpState,
};
use common::*;
use tonic::Code;
use tonic::transport::Channel;

fn with_ticket(metadata: &str, ticket_id: &str) -> EvaluateRequest {
    EvaluateRequest {
        step_up: Some(StepUpProof {
            ticket_id: ticket_id.to_owned(),
            completed_challenges: Vec::new(),
        }),
        ..dcr(metadata, "203.0.113.7")
    }
}

fn resolve(ticket_id: &str, approve: bool) -> ResolveStepUpRequest {
    ResolveStepUpRequest {
        ticket_id: ticket_id.to_owned(),
        approve,
        resolver: "ops@example.com".to_owned(),
        note: "called the vendor".to_owned(),
    }
}

async fn get(step_ups: &mut StepUpServiceClient<Channel>, ticket_id: &str) -> StepUp {
    step_ups
        .get_step_up(GetStepUpRequest {
            ticket_id: ticket_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The codes of the error findings (warnings such as `uri_host_mismatch` left out).
fn codes(response: &EvaluateResponse) -> Vec<&str> {
    response
        .findings
        .iter()
        .filter(|f| f.severity() == Severity::Error)
        .map(|f| f.code.as_str())
        .collect()
}

/// A server (with `extra_args`) holding the cross-domain registration for `admin_approval`:
/// its clients and the ticket id.
struct Held {
    _data: tempfile::TempDir,
    _server: Server,
    client: RegistrationServiceClient<Channel>,
    step_ups: StepUpServiceClient<Channel>,
    ticket_id: String,
    decision: EvaluateResponse,
}

async fn held(extra_args: &[&str]) -> Held {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), extra_args);
    let mut client = server.registration().await;
    let step_ups = StepUpServiceClient::new(server.channel().await);
    let decision = client
        .evaluate(dcr(CROSS_DOMAIN_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.decision(), Decision::StepUp);
    let ticket_id = decision.step_up.clone().unwrap().ticket_id;
    Held {
        _data: data,
        _server: server,
        client,
        step_ups,
        ticket_id,
        decision,
    }
}

#[tokio::test]
async fn an_approved_ticket_completes_the_step_up_for_the_same_registration_only() {
    let Held {
        mut client,
        mut step_ups,
        ticket_id,
        decision: held,
        _data,
        _server,
        ..
    } = held(&[]).await;

    let pending = get(&mut step_ups, &ticket_id).await;
    assert_eq!(pending.state(), StepUpState::Pending);
    assert_eq!(pending.challenges, vec!["admin_approval"]);
    assert_eq!(pending.decision_id, held.decision_id);
    assert_eq!(pending.fingerprint, held.fingerprint);
    assert_eq!(pending.client_name, "Example");

    // While pending, presenting the ticket keeps pointing at it: no second ticket.
    let again = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.decision(), Decision::StepUp);
    assert_eq!(again.step_up.unwrap().ticket_id, ticket_id);
    let listed = step_ups
        .list_step_ups(ListStepUpsRequest {
            state: StepUpState::Pending as i32,
            ..ListStepUpsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.step_ups.len(), 1);
    assert_eq!(listed.step_ups[0].ticket_id, ticket_id);

    let approved = step_ups
        .resolve_step_up(resolve(&ticket_id, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.state(), StepUpState::Approved);
    assert_eq!(approved.resolver, "ops@example.com");
    assert!(approved.resolved_at.is_some());
    let repeated = step_ups
        .resolve_step_up(resolve(&ticket_id, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        repeated.resolved_at, approved.resolved_at,
        "repeating is harmless"
    );
    let reversed = step_ups
        .resolve_step_up(resolve(&ticket_id, false))
        .await
        .unwrap_err();
    assert_eq!(reversed.code(), Code::FailedPrecondition);

    let admitted = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        admitted.decision(),
        Decision::Approve,
        "{:?}",
        admitted.findings
    );

    let other = client
        .evaluate(with_ticket(WEB_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.decision(), Decision::Deny);
    assert_eq!(codes(&other), vec!["step_up_ticket_mismatch"]);

    let unknown = client
        .evaluate(with_ticket(
            CROSS_DOMAIN_CLIENT,
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.decision(), Decision::Deny);
    assert_eq!(codes(&unknown), vec!["step_up_ticket_unknown"]);
}

/// The review's F-2 repro: the cross-domain registration, widened after the operator looked.
const WIDENED: &str = r#"{"client_name":"Example","client_uri":"https://bank.example","redirect_uris":["https://callbacks.other.example.net/cb"],"grant_types":["authorization_code","refresh_token","client_credentials"],"scope":"admin offline_access openid","token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://attacker.example/jwks.json"}"#;

#[tokio::test]
async fn an_approval_covers_exactly_what_the_operator_saw_once() {
    let Held {
        mut client,
        mut step_ups,
        ticket_id,
        decision: held,
        _data,
        _server,
    } = held(&[]).await;

    // The operator sees exactly what an approval registers, and why it was held.
    let pending = get(&mut step_ups, &ticket_id).await;
    assert_eq!(pending.client_metadata_json, held.client_metadata_json);
    assert_eq!(
        pending.redirect_uri_hosts,
        vec!["callbacks.other.example.net"]
    );
    assert_eq!(pending.client_id_host, "", "DCR has no client_id host");
    assert_eq!(pending.reasons, held.reasons);
    assert_eq!(pending.findings, held.findings);
    assert!(
        pending
            .findings
            .iter()
            .any(|f| f.code == "uri_host_mismatch"),
        "{:?}",
        pending.findings
    );
    assert_eq!(pending.max_uses, 1);
    step_ups
        .resolve_step_up(resolve(&ticket_id, true))
        .await
        .unwrap();

    let widened = client
        .evaluate(EvaluateRequest {
            caller: Some(clientgate::proto::Caller {
                ip: "198.51.100.99".to_owned(),
                ..Default::default()
            }),
            ..with_ticket(WIDENED, &ticket_id)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(widened.decision(), Decision::Deny);
    assert_eq!(codes(&widened), vec!["step_up_ticket_mismatch"]);
    let refusal = &widened
        .findings
        .iter()
        .find(|f| f.severity() == Severity::Error)
        .unwrap()
        .message;
    assert!(
        refusal.contains(
            "the metadata differs in `client_uri`, `grant_types`, `jwks_uri`, `scope`, `token_endpoint_auth_method`"
        ),
        "{refusal}"
    );

    let admitted = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        admitted.decision(),
        Decision::Approve,
        "{:?}",
        admitted.findings
    );
    let again = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.decision(), Decision::Deny, "a ticket approves once");
    assert_eq!(codes(&again), vec!["step_up_ticket_used"]);

    let redeemed = get(&mut step_ups, &ticket_id).await;
    assert_eq!(redeemed.redemptions.len(), 1, "the redemption is recorded");
    assert_eq!(redeemed.redemptions[0].decision_id, admitted.decision_id);
    let mut admin =
        clientgate::proto::admin_service_client::AdminServiceClient::new(_server.channel().await);
    let record = admin
        .get_decision(clientgate::proto::GetDecisionRequest {
            decision_id: admitted.decision_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        record.redeemed_ticket, ticket_id,
        "and the decision names its ticket"
    );
}

#[tokio::test]
async fn step_up_ticket_uses_gives_a_ticket_more_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientgate.toml");
    std::fs::write(&config, "[step_up]\nticket_uses = 2\n").unwrap();
    let Held {
        mut client,
        mut step_ups,
        ticket_id,
        _data,
        _server,
        ..
    } = held(&["--config", config.to_str().unwrap()]).await;
    step_ups
        .resolve_step_up(resolve(&ticket_id, true))
        .await
        .unwrap();
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let answer = client
            .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
            .await
            .unwrap()
            .into_inner();
        decisions.push(answer.decision());
    }
    assert_eq!(
        decisions,
        vec![Decision::Approve, Decision::Approve, Decision::Deny]
    );
    assert_eq!(get(&mut step_ups, &ticket_id).await.max_uses, 2);
}

#[tokio::test]
async fn a_denied_ticket_keeps_the_registration_out() {
    let Held {
        mut client,
        mut step_ups,
        ticket_id,
        _data,
        _server,
        ..
    } = held(&[]).await;
    let denied = step_ups
        .resolve_step_up(resolve(&ticket_id, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.state(), StepUpState::Denied);

    let refused = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.decision(), Decision::Deny);
    assert_eq!(codes(&refused), vec!["step_up_denied"]);
    assert!(
        refused
            .error
            .unwrap()
            .error_description
            .contains("called the vendor")
    );
}

#[tokio::test]
async fn an_expired_ticket_cannot_be_approved_or_redeemed() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("clientgate.toml");
    std::fs::write(&config, "[step_up]\nticket_ttl_secs = 1\n").unwrap();
    let Held {
        mut client,
        mut step_ups,
        ticket_id,
        _data,
        _server,
        ..
    } = held(&["--config", &config.display().to_string()]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    assert_eq!(
        get(&mut step_ups, &ticket_id).await.state(),
        StepUpState::Expired
    );
    let late = step_ups
        .resolve_step_up(resolve(&ticket_id, true))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains("expired"), "{}", late.message());

    let refused = client
        .evaluate(with_ticket(CROSS_DOMAIN_CLIENT, &ticket_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.decision(), Decision::Deny);
    assert_eq!(codes(&refused), vec!["step_up_ticket_expired"]);
}

#[tokio::test]
async fn malformed_resolutions_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut step_ups = StepUpServiceClient::new(server.channel().await);
    let anonymous = ResolveStepUpRequest {
        resolver: String::new(),
        ..resolve("01ARZ3NDEKTSV4RRFFQ69G5FAV", true)
    };
    let status = step_ups.resolve_step_up(anonymous).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("`resolver`"));
    let missing = step_ups
        .resolve_step_up(resolve("01ARZ3NDEKTSV4RRFFQ69G5FAV", true))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
