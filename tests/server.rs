//! Black-box tests: the real `clientgate serve` process on 127.0.0.1:0, called over gRPC.

mod common;

use clientgate::proto::{
    Decision, EvaluateRequest, GetDecisionRequest, GetPolicyStatusRequest, ListDecisionsRequest,
    Severity, StepUpProof,
};
use common::*;
use tonic::Code;

#[tokio::test]
async fn the_starter_policies_approve_deny_and_step_up_over_grpc() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;

    let approved = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.decision(), Decision::Approve);
    assert_eq!(
        approved.reasons[0].policy_id,
        "approve_https_or_loopback_redirects"
    );
    assert!(approved.error.is_none());
    assert_eq!(approved.decision_id.len(), 26, "a ULID decision id");
    let normalized: serde_json::Value =
        serde_json::from_str(&approved.client_metadata_json).unwrap();
    assert_eq!(
        normalized["token_endpoint_auth_method"],
        "client_secret_basic"
    );

    let native = client
        .evaluate(dcr(LOOPBACK_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(native.decision(), Decision::Approve);
    assert_eq!(native.obligations, vec!["require_consent"]);

    let blocked = client
        .evaluate(dcr(BLOCKED_CLIENT, "203.0.113.8"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(blocked.decision(), Decision::Deny);
    let error = blocked.error.expect("a deny carries an OAuth error");
    assert_eq!(error.error, "invalid_redirect_uri");
    assert_eq!(
        error.error_description,
        "a redirect URI points at a blocked host"
    );

    let stepped_up = client
        .evaluate(dcr(CROSS_DOMAIN_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stepped_up.decision(), Decision::StepUp);
    let step_up = stepped_up.step_up.expect("a step-up carries its ticket");
    assert_eq!(step_up.challenges, vec!["admin_approval"]);
    assert!(!step_up.ticket_id.is_empty());
    assert!(step_up.expires_at.is_some());
}

#[tokio::test]
async fn a_malformed_registration_is_a_deny_with_findings() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;

    let response = client
        .evaluate(dcr(FRAGMENT_CLIENT, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision(), Decision::Deny);
    assert_eq!(
        response.error.as_ref().unwrap().error,
        "invalid_redirect_uri"
    );
    let finding = &response.findings[0];
    assert_eq!(finding.code, "redirect_uri_fragment");
    assert_eq!(finding.severity(), Severity::Error);
    assert_eq!(finding.field, "redirect_uris[0]");
    assert_eq!(finding.rule, "49");
    assert!(response.reasons.is_empty(), "no policy ran");

    let bad_json = client
        .evaluate(dcr("{\"redirect_uris\": [", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad_json.decision(), Decision::Deny);
    assert_eq!(bad_json.error.unwrap().error, "invalid_client_metadata");
    assert_eq!(bad_json.findings[0].code, "invalid_json");
}

#[tokio::test]
async fn malformed_calls_are_invalid_argument_naming_the_field() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;

    let cases = [
        (EvaluateRequest::default(), "`registration`"),
        (
            EvaluateRequest {
                tenant: "bad tenant/../x".to_owned(),
                ..dcr(WEB_CLIENT, "")
            },
            "`tenant`",
        ),
        (dcr(WEB_CLIENT, "not-an-ip"), "`caller.ip`"),
        (
            dcr(
                &format!("{{\"client_name\":\"{}\"}}", "x".repeat(70_000)),
                "",
            ),
            "`dcr.metadata_json`",
        ),
    ];
    for (request, field) in cases {
        let status = client
            .evaluate(request)
            .await
            .expect_err("a malformed call fails");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(field),
            "{field} not named in: {}",
            status.message()
        );
    }

    let huge = dcr(&"x".repeat(200_000), "");
    let status = client
        .evaluate(huge)
        .await
        .expect_err("an oversized message fails");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );

    // The server is still serving after all of that.
    let approved = client
        .evaluate(dcr(WEB_CLIENT, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.decision(), Decision::Approve);
}

#[tokio::test]
async fn decisions_are_listed_newest_first_and_filtered() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let mut admin = server.admin().await;

    let mut ids = Vec::new();
    for (metadata, ip) in [
        (WEB_CLIENT, "203.0.113.7"),
        (BLOCKED_CLIENT, "2001:db8::1"),
        (CROSS_DOMAIN_CLIENT, "203.0.113.7"),
    ] {
        let response = client
            .evaluate(dcr(metadata, ip))
            .await
            .unwrap()
            .into_inner();
        ids.push(response.decision_id);
    }
    let dry = client
        .evaluate(EvaluateRequest {
            dry_run: true,
            ..dcr(WEB_CLIENT, "203.0.113.7")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.decision_id.is_empty(), "a dry run records nothing");

    let all = admin
        .list_decisions(ListDecisionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = all
        .decisions
        .iter()
        .map(|d| d.decision_id.as_str())
        .collect();
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]
    );

    let by_ip = admin
        .list_decisions(ListDecisionsRequest {
            ip: "203.0.113.7".to_owned(),
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_ip.decisions.len(), 2);

    let denied = admin
        .list_decisions(ListDecisionsRequest {
            decision: Decision::Deny as i32,
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decisions.len(), 1);
    let record = &denied.decisions[0];
    assert_eq!(record.ip, "2001:db8::1");
    assert_eq!(record.tenant, "default");
    assert_eq!(record.registration_type, "dcr");
    assert_eq!(
        record.reasons[0].policy_id,
        "deny_blocklisted_redirect_hosts"
    );
    assert_eq!(record.error.as_ref().unwrap().error, "invalid_redirect_uri");
    assert!(!record.policy_version.is_empty());
    assert!(!record.fingerprint.is_empty());

    let first_page = admin
        .list_decisions(ListDecisionsRequest {
            page_size: 2,
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.decisions.len(), 2);
    let second_page = admin
        .list_decisions(ListDecisionsRequest {
            page_size: 2,
            page_token: first_page.next_page_token.clone(),
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_page.decisions[0].decision_id, ids[0]);
    assert!(second_page.next_page_token.is_empty());

    let fetched = admin
        .get_decision(GetDecisionRequest {
            decision_id: ids[2].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.decision(), Decision::StepUp);
    assert_eq!(fetched.step_up.unwrap().challenges, vec!["admin_approval"]);

    let missing = admin
        .get_decision(GetDecisionRequest {
            decision_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        })
        .await
        .expect_err("no such decision");
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_recorded_before_a_restart_are_listed_after_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    let mut before = Vec::new();
    for _ in 0..5 {
        let response = client
            .evaluate(dcr(WEB_CLIENT, "203.0.113.9"))
            .await
            .unwrap()
            .into_inner();
        before.push(response.decision_id);
    }
    drop(client);
    let (status, log) = server.stop();
    assert!(
        status.success(),
        "SIGTERM is a clean stop: {status:?}\n{log}"
    );
    assert!(log.contains("store flushed"), "{log}");

    let restarted = Server::start(&starter_policies(), data.path(), &[]);
    let listed = restarted
        .admin()
        .await
        .list_decisions(ListDecisionsRequest {
            ip: "203.0.113.9".to_owned(),
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut after: Vec<String> = listed
        .decisions
        .into_iter()
        .map(|d| d.decision_id)
        .collect();
    after.reverse();
    assert_eq!(after, before);
}

#[tokio::test]
async fn completed_challenges_only_count_when_the_as_may_attest_them() {
    let data = tempfile::tempdir().unwrap();
    let policies = starter_copy();
    std::fs::write(
        policies.path().join("40-consent.cedar"),
        "@id(\"consent_for_loopback\")\n@step_up(\"user_consent\")\nforbid (principal, action, resource)\nwhen { principal.redirect_kinds.contains(\"loopback\") };\n",
    )
    .unwrap();
    let server = Server::start(policies.path(), data.path(), &[]);
    let mut client = server.registration().await;

    let pending = client
        .evaluate(dcr(LOOPBACK_CLIENT, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.decision(), Decision::StepUp);
    assert_eq!(pending.step_up.unwrap().challenges, vec!["user_consent"]);

    let with_proof = |challenges: &[&str]| EvaluateRequest {
        step_up: Some(StepUpProof {
            ticket_id: String::new(),
            completed_challenges: challenges.iter().map(|c| c.to_string()).collect(),
        }),
        ..dcr(LOOPBACK_CLIENT, "")
    };
    let consented = client
        .evaluate(with_proof(&["user_consent"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(consented.decision(), Decision::Approve);

    let cross = client
        .evaluate(EvaluateRequest {
            step_up: with_proof(&["admin_approval"]).step_up,
            ..dcr(CROSS_DOMAIN_CLIENT, "")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cross.decision(),
        Decision::StepUp,
        "the AS cannot attest admin approval"
    );
    assert!(
        cross
            .findings
            .iter()
            .any(|f| f.code == "challenge_not_attestable")
    );
}

#[tokio::test]
async fn health_reflection_and_policy_status_are_served() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);

    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "clientgate.v1.RegistrationService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.status, 1, "{service:?} is SERVING");
    }

    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "clientgate.v1.RegistrationService",
        "clientgate.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let status = server
        .admin()
        .await
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.policy_count, 15);
    assert_eq!(status.version.len(), 16);
    assert_eq!(status.profile, "mcp");
}

#[test]
fn invalid_policies_stop_the_server_at_start_with_file_and_line() {
    let data = tempfile::tempdir().unwrap();
    let policies = tempfile::tempdir().unwrap();
    for name in ["schema.cedarschema", "entities.json"] {
        std::fs::copy(starter_policies().join(name), policies.path().join(name)).unwrap();
    }
    std::fs::write(
        policies.path().join("broken.cedar"),
        "@id(\"ok\")\npermit (principal, action, resource);\npermit (principal, action, resource) when { principal.no_such_attribute };\n",
    )
    .unwrap();
    let Err((status, log)) = Server::try_start(policies.path(), data.path(), &[]) else {
        panic!("the server must refuse invalid policies");
    };
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("broken.cedar:3:"), "{log}");
    assert!(log.contains("no_such_attribute"), "{log}");
}

#[test]
fn configuration_errors_name_every_bad_key() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["serve", "--listen", "not-an-address", "--data"])
        .arg(data.path())
        .env("CLIENTGATE_VALIDATION_PROFILE", "lenient")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`server.listen`"), "{stderr}");
    assert!(stderr.contains("`validation.profile`"), "{stderr}");
}

#[test]
fn a_fatal_error_is_one_log_line_so_json_logs_stay_json_lines() {
    let data = tempfile::tempdir().unwrap();
    let policies = tempfile::tempdir().unwrap();
    for name in ["schema.cedarschema", "entities.json"] {
        std::fs::copy(starter_policies().join(name), policies.path().join(name)).unwrap();
    }
    std::fs::write(
        policies.path().join("broken.cedar"),
        "permit (principal, action;\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
        .arg(policies.path())
        .arg("--data")
        .arg(data.path())
        .env("CLIENTGATE_LOG_FORMAT", "json")
        .env("CLIENTGATE_ADDR", "127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let errors: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "the error is said once: {stderr}");
    assert!(
        errors[0]["fields"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("broken.cedar:1:")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["level"] == "WARN" && line["fields"]["variable"] == "CLIENTGATE_ADDR"),
        "a neighbour's CLIENTGATE_ variable is a warning: {stderr}"
    );
}

#[test]
fn a_log_level_that_would_log_nothing_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clientgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("CLIENTGATE_LOG_LEVEL", "infoo")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`log.level`"), "{stderr}");
    assert!(stderr.contains("`infoo` names no level"), "{stderr}");
}
