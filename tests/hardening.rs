//! What the December 2026 security review found, closed and checked against the real
//! binary over gRPC: bounded output for bounded input (F-3), bad input named rather than
//! absorbed (F-10, F-12, F-18).

mod common;

use clientgate::proto::step_up_service_client::StepUpServiceClient;
use clientgate::proto::{Decision, ListDecisionsRequest, ResolveStepUpRequest};
use common::*;
use prost::Message;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_thousand_bad_redirect_uris_give_a_bounded_answer_and_record() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let uris = vec!["\"x\""; 16_000].join(",");
    let body = format!("{{\"redirect_uris\":[{uris}]}}");
    assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
    let answer = client.evaluate(dcr(&body, "")).await.unwrap().into_inner();
    assert_eq!(answer.decision(), Decision::Deny);
    assert_eq!(
        answer.findings.len(),
        101,
        "100 findings and the count of the rest"
    );
    assert_eq!(answer.findings[100].code, "findings_truncated");
    // The review measured 1.8 MB for this body; the answer is now bounded by the body
    // (echoed once, normalized) plus 100 bounded findings.
    let size = answer.encoded_len();
    assert!(size < 2 * body.len() + 64 * 1024, "a {size}-byte answer");

    let listed = server
        .admin()
        .await
        .list_decisions(ListDecisionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.decisions[0].findings.len(),
        101,
        "the record is as bounded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_note_or_resolver_is_refused_naming_the_field_and_nothing_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let held = client
        .evaluate(dcr(CROSS_DOMAIN_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    let ticket_id = held.step_up.unwrap().ticket_id;
    let mut step_ups = StepUpServiceClient::new(server.channel().await);
    let resolving = |resolver: String, note: String| ResolveStepUpRequest {
        ticket_id: ticket_id.clone(),
        approve: true,
        resolver,
        note,
    };
    let long_note = step_ups
        .resolve_step_up(resolving("ops".to_owned(), "n".repeat(2_001)))
        .await
        .unwrap_err();
    assert_eq!(long_note.code(), Code::InvalidArgument);
    assert!(
        long_note.message().contains("`note`"),
        "{}",
        long_note.message()
    );
    let long_resolver = step_ups
        .resolve_step_up(resolving("r".repeat(201), String::new()))
        .await
        .unwrap_err();
    assert_eq!(long_resolver.code(), Code::InvalidArgument);
    assert!(
        long_resolver.message().contains("`resolver`"),
        "{}",
        long_resolver.message()
    );
    // Beyond the admin decode limit the call is not even read.
    let huge = step_ups
        .resolve_step_up(resolving(
            "ops".to_owned(),
            "n".repeat(4 * 1024 * 1024 - 4096),
        ))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    let still_pending = step_ups
        .get_step_up(clientgate::proto::GetStepUpRequest {
            ticket_id: ticket_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still_pending.state(),
        clientgate::proto::StepUpState::Pending,
        "no refused resolution took effect"
    );
}
