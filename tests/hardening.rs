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

/// Sends `bytes` as the request message of `path`, as a client with a broken encoder would.
async fn raw_call(server: &Server, path: &'static str, bytes: Vec<u8>) -> tonic::Status {
    #[derive(Clone, Default)]
    struct Raw;
    struct RawEncoder;
    struct RawDecoder;
    impl tonic::codec::Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }
    impl tonic::codec::Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(
            &mut self,
            item: Vec<u8>,
            dst: &mut tonic::codec::EncodeBuf<'_>,
        ) -> Result<(), tonic::Status> {
            use prost::bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl tonic::codec::Decoder for RawDecoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(
            &mut self,
            src: &mut tonic::codec::DecodeBuf<'_>,
        ) -> Result<Option<Vec<u8>>, tonic::Status> {
            use prost::bytes::Buf;
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_does_not_decode_is_invalid_argument_not_internal() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    // `tenant` (field 1, a string) holding the byte 0xff: not UTF-8.
    let not_utf8 = raw_call(
        &server,
        "/clientgate.v1.RegistrationService/Evaluate",
        vec![0x0a, 0x01, 0xff],
    )
    .await;
    assert_eq!(not_utf8.code(), Code::InvalidArgument, "{not_utf8:?}");
    assert!(
        not_utf8.message().contains("EvaluateRequest"),
        "{}",
        not_utf8.message()
    );
    // A length that runs past the end: truncated protobuf.
    let truncated = raw_call(
        &server,
        "/clientgate.v1.StepUpService/GetStepUp",
        vec![0x0a, 0x40, b'x'],
    )
    .await;
    assert_eq!(truncated.code(), Code::InvalidArgument, "{truncated:?}");
    let garbage = raw_call(
        &server,
        "/clientgate.v1.AdminService/ListDecisions",
        vec![0xff; 16],
    )
    .await;
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv4_mapped_caller_is_the_ipv4_caller() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let answer = client
        .evaluate(dcr(WEB_CLIENT, "::ffff:203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.decision(),
        Decision::Approve,
        "a dual-stack AS is not denied by policy_evaluation_error: {:?}",
        answer.findings
    );
    let listed = server
        .admin()
        .await
        .list_decisions(ListDecisionsRequest {
            ip: "203.0.113.7".to_owned(),
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.decisions.len(),
        1,
        "recorded and filtered as 203.0.113.7"
    );
    assert_eq!(listed.decisions[0].ip, "203.0.113.7");
}

#[test]
fn an_absurd_cache_lifetime_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientgate.toml");
    std::fs::write(&config, "[cimd]\ncache_max_secs = 18446744073709551\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["check", "--config"])
        .arg(&config)
        .arg("--policies")
        .arg(starter_policies())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cimd.cache_max_secs"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_that_names_a_member_twice_is_denied_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    // The review's F-10 repro: last-wins would approve `app.example.com`, while a first-wins
    // parser in the AS would register `evil.example`.
    let answer = client
        .evaluate(dcr(
            r#"{"client_name":"dup","redirect_uris":["https://evil.example/cb"],"redirect_uris":["https://app.example.com/cb"]}"#,
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.decision(), Decision::Deny);
    assert_eq!(answer.findings[0].code, "duplicate_member");
    assert_eq!(answer.findings[0].field, "redirect_uris");
    assert_eq!(
        answer.error.unwrap().error,
        "invalid_redirect_uri",
        "the OAuth error of the member named twice"
    );
}

#[test]
fn a_deny_cidr_that_does_not_parse_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientgate.toml");
    std::fs::write(
        &config,
        "[cimd]\ndeny_cidrs = [\"64:ff9b:1::/48\", \"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["check", "--config"])
        .arg(&config)
        .arg("--policies")
        .arg(starter_policies())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cimd.deny_cidrs"), "{stderr}");
    assert!(
        stderr.contains("`/33` is not a prefix length of 0–32"),
        "{stderr}"
    );
}

/// F-11: names that would spoof a consent screen are flagged, reach policies and are
/// stepped up by the starter pack; a known client's real name is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_spoofs_a_consent_screen_is_flagged_and_stepped_up() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let decide = |name: &str| {
        format!(
            r#"{{"client_name":{},"redirect_uris":["https://app.example.com/cb"]}}"#,
            serde_json::Value::from(name)
        )
    };
    for (name, warning) in [
        ("Cl\u{0430}ude", "client_name_confusable"),
        ("Claude\u{202E}edoC", "client_name_bidi_control"),
        ("Cla\u{200B}ude", "client_name_invisible_character"),
        ("Claude\u{0}", "client_name_control_character"),
    ] {
        let answer = client
            .evaluate(dcr(&decide(name), ""))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.decision(),
            Decision::StepUp,
            "{name:?}: {:?}",
            answer.findings
        );
        assert!(
            answer
                .reasons
                .iter()
                .any(|r| r.policy_id == "step_up_deceptive_client_names"),
            "{name:?}: {:?}",
            answer.reasons
        );
        assert!(
            answer.findings.iter().any(|f| f.code == warning),
            "{name:?}: {:?}",
            answer.findings
        );
    }
    // The real name on the real client's redirect URI (policies/known-clients.toml).
    let real = client
        .evaluate(dcr(
            r#"{"client_name":"Claude","redirect_uris":["https://claude.ai/api/mcp/auth_callback"],"token_endpoint_auth_method":"none"}"#,
            "",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(real.decision(), Decision::Approve, "{:?}", real.findings);
}
