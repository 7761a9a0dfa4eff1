//! CIMD end to end: the real clientgate process fetches documents from a real HTTPS server on
//! 127.0.0.1 (test CA, pinned names), caches them, and decides with the starter policies.
//! Traffic only ever goes to loopback; refusals of private ranges are tested as pure
//! functions in `src/address.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::{
    CimdRegistration, Decision, EvaluateRequest, EvaluateResponse, ListDecisionsRequest,
    evaluate_request,
};
use common::doc_server::{Behaviour, DocServer};
use common::*;
use tonic::transport::Channel;

fn cimd(client_id: &str, redirect_uri: &str) -> EvaluateRequest {
    EvaluateRequest {
        registration: Some(evaluate_request::Registration::Cimd(CimdRegistration {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
        })),
        ..EvaluateRequest::default()
    }
}

/// `https://host/path` → (`host`, `/path`).
fn split(client_id: &str) -> (String, String) {
    let rest = client_id.strip_prefix("https://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    (host.to_owned(), format!("/{path}"))
}

struct Setup {
    docs: DocServer,
    server: Server,
    _data: tempfile::TempDir,
    _config: tempfile::TempDir,
}

async fn setup(allow_loopback: bool, extra_config: &str) -> Setup {
    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = docs.write_config(config_dir.path(), allow_loopback, extra_config);
    let data = tempfile::tempdir().unwrap();
    let config_arg = config.display().to_string();
    let server = Server::start(&starter_policies(), data.path(), &["--config", &config_arg]);
    Setup {
        docs,
        server,
        _data: data,
        _config: config_dir,
    }
}

async fn evaluate(
    client: &mut RegistrationServiceClient<Channel>,
    request: EvaluateRequest,
) -> EvaluateResponse {
    client.evaluate(request).await.unwrap().into_inner()
}

fn codes(response: &EvaluateResponse) -> Vec<&str> {
    response.findings.iter().map(|f| f.code.as_str()).collect()
}

fn fixture(name: &str) -> (String, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real-cimd")
        .join(name);
    let body = std::fs::read(path).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (json["client_id"].as_str().unwrap().to_owned(), body)
}

/// Fixture, the decision the starter policies intend, and its obligations.
const REAL_DOCUMENTS: &[&[(&str, Decision, &[&str])]] = &[
    &[
        ("chatgpt.2026-09-08.json", Decision::Approve, &[]),
        ("cimd-dev.stytch.json", Decision::StepUp, &[]),
        (
            "claude-ai-connectors.2026-09-19.json",
            Decision::Approve,
            &[],
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
        ("mcp-spec-2025-11-25-example.json", Decision::StepUp, &[]),
        ("mcptest-io.json", Decision::StepUp, &[]),
        ("opencode.2026-09-07.json", Decision::StepUp, &[]),
        ("vscode.2026-09-08.json", Decision::Approve, &[]),
        ("zed.proposed.json", Decision::StepUp, &[]),
    ],
    // Earlier captures of the same client_ids, served by a second setup.
    &[
        (
            "claude-code.2026-08-04.json",
            Decision::Approve,
            &["require_consent"],
        ),
        ("vscode.2026-02-17.json", Decision::Approve, &[]),
    ],
];

#[tokio::test(flavor = "multi_thread")]
async fn every_real_client_document_gets_the_decision_the_starter_policies_intend() {
    let mut failures = Vec::new();
    for group in REAL_DOCUMENTS {
        let setup = setup(true, "").await;
        let mut client = setup.server.registration().await;
        for (file, decision, obligations) in *group {
            let (client_id, body) = fixture(file);
            let (host, path) = split(&client_id);
            setup.docs.route(&host, &path, Behaviour::json(body));
            let response = evaluate(&mut client, cimd(&client_id, "")).await;
            let errors: Vec<_> = response
                .findings
                .iter()
                .filter(|f| f.severity == 1)
                .collect();
            if response.decision() != *decision
                || response.obligations != *obligations
                || !errors.is_empty()
            {
                failures.push(format!(
                    "{file}: {:?} {:?} findings {:?} reasons {:?}",
                    response.decision(),
                    response.obligations,
                    response.findings,
                    response.reasons
                ));
            }
            assert_eq!(response.cimd.as_ref().unwrap().cache, "miss", "{file}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn real_quirks_claude_code_localhost_vscode_device_code_chatgpt_private_key_jwt() {
    let setup = setup(true, "").await;
    let mut client = setup.server.registration().await;
    for file in [
        "claude-code.2026-09-08.json",
        "vscode.2026-09-08.json",
        "chatgpt.2026-09-08.json",
    ] {
        let (client_id, body) = fixture(file);
        let (host, path) = split(&client_id);
        setup.docs.route(&host, &path, Behaviour::json(body));
    }

    // Claude Code registers `http://localhost/callback` without a port (D3).
    let claude = evaluate(
        &mut client,
        cimd(
            "https://claude.ai/oauth/claude-code-client-metadata",
            "http://localhost:58135/callback",
        ),
    )
    .await;
    assert_eq!(claude.decision(), Decision::Approve);
    assert_eq!(claude.obligations, vec!["require_consent"]);
    // ...but never across hosts (D4).
    let crossed = evaluate(
        &mut client,
        cimd(
            "https://claude.ai/oauth/claude-code-client-metadata",
            "http://127.1.2.3:58135/callback",
        ),
    )
    .await;
    assert_eq!(crossed.decision(), Decision::Deny);
    assert_eq!(crossed.error.as_ref().unwrap().error, "invalid_request");
    assert!(codes(&crossed).contains(&"redirect_uri_mismatch"));

    // VS Code lists the device_code grant: filtered, with a warning (C25).
    let vscode = evaluate(
        &mut client,
        cimd("https://vscode.dev/oauth/client-metadata.json", ""),
    )
    .await;
    assert_eq!(vscode.decision(), Decision::Approve);
    assert!(codes(&vscode).contains(&"grant_type_filtered"));
    let registered: serde_json::Value = serde_json::from_str(&vscode.client_metadata_json).unwrap();
    assert_eq!(
        registered["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );

    // ChatGPT is a confidential client with private_key_jwt and a jwks_uri (C11).
    let chatgpt = evaluate(
        &mut client,
        cimd("https://chatgpt.com/oauth/client.json", ""),
    )
    .await;
    assert_eq!(chatgpt.decision(), Decision::Approve);
    let registered: serde_json::Value =
        serde_json::from_str(&chatgpt.client_metadata_json).unwrap();
    assert_eq!(registered["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(
        registered["jwks_uri"],
        "https://chatgpt.com/oauth/jwks.json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_document_is_a_hit_and_is_listed_by_client_id() {
    let setup = setup(true, "").await;
    let mut client = setup.server.registration().await;
    let (client_id, body) = fixture("claude-code.2026-09-08.json");
    let (host, path) = split(&client_id);
    setup
        .docs
        .route(&host, &path, Behaviour::json(body.clone()));

    let first = evaluate(&mut client, cimd(&client_id, "")).await;
    let second = evaluate(&mut client, cimd(&client_id, "")).await;
    let first_info = first.cimd.unwrap();
    let second_info = second.cimd.unwrap();
    assert_eq!(first_info.cache, "miss");
    assert_eq!(second_info.cache, "hit");
    assert_eq!(
        setup.docs.seen(&host, &path).len(),
        1,
        "the hit did not fetch"
    );
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&body))
    };
    assert_eq!(second_info.document_sha256, sha);
    assert!(second_info.expires_at.unwrap().seconds > second_info.fetched_at.unwrap().seconds);

    let request = &setup.docs.seen(&host, &path)[0];
    let accept = request
        .headers
        .iter()
        .find(|(name, _)| name == "accept")
        .map(|(_, v)| v.as_str());
    assert_eq!(accept, Some("application/cimd+json, application/json"));
    assert!(
        !request
            .headers
            .iter()
            .any(|(name, _)| name == "cookie" || name == "authorization")
    );

    let listed = setup
        .server
        .admin()
        .await
        .list_decisions(ListDecisionsRequest {
            client_id: client_id.clone(),
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 2);
    assert_eq!(listed.decisions[0].registration_type, "cimd");
    assert_eq!(listed.decisions[0].client_id, client_id);

    let metrics = http()
        .get(format!("{}/metrics", setup.server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (outcome, count) in [("miss", 1), ("hit", 1)] {
        let series = format!("clientgate_cimd_documents_total{{outcome=\"{outcome}\"}} {count}\n");
        assert!(
            metrics.contains(&series),
            "the metrics count the {outcome}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_first_calls_cause_exactly_one_fetch() {
    let setup = setup(true, "").await;
    let (client_id, body) = fixture("claude-code.2026-09-08.json");
    let (host, path) = split(&client_id);
    setup.docs.route(
        &host,
        &path,
        Behaviour::Document {
            body,
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            delay: Duration::from_millis(500),
        },
    );
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(setup.server.channel().await);
    }
    let calls: Vec<_> = (0..1000)
        .map(|n| {
            let mut client = RegistrationServiceClient::new(channels[n % channels.len()].clone());
            let request = cimd(&client_id, "");
            tokio::spawn(async move { client.evaluate(request).await.map(|r| r.into_inner()) })
        })
        .collect();
    let mut approved = 0;
    for call in calls {
        let response = call.await.unwrap().expect("every call is answered");
        if response.decision() == Decision::Approve {
            approved += 1;
        }
    }
    assert_eq!(approved, 1000);
    assert_eq!(
        setup.docs.seen(&host, &path).len(),
        1,
        "1,000 calls, one fetch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revalidation_no_store_and_a_document_that_turns_invalid() {
    let setup = setup(true, "cache_min_secs = 0\n").await;
    let mut client = setup.server.registration().await;
    let client_id = "https://app.example.com/oauth/client.json";
    let document = |extra: &str| {
        format!(
            r#"{{"client_id":"{client_id}","client_name":"Example","redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"{extra}}}"#
        )
    };
    setup.docs.route(
        "app.example.com",
        "/oauth/client.json",
        Behaviour::Revalidating {
            body: document("").into_bytes(),
            etag: "\"v1\"".to_owned(),
            max_age: 1,
        },
    );
    let first = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(first.cimd.unwrap().cache, "miss");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(second.cimd.unwrap().cache, "revalidated");
    let seen = setup.docs.seen("app.example.com", "/oauth/client.json");
    let conditional = seen[1]
        .headers
        .iter()
        .find(|(name, _)| name == "if-none-match");
    assert_eq!(conditional.map(|(_, v)| v.as_str()), Some("\"v1\""));

    // C36: the document turns invalid; the decision denies and nothing stays cached.
    setup.docs.route(
        "app.example.com",
        "/oauth/client.json",
        Behaviour::Revalidating {
            body: document(r#","client_secret":"s3cr3t""#).into_bytes(),
            etag: "\"v2\"".to_owned(),
            max_age: 1,
        },
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let turned = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(turned.decision(), Decision::Deny);
    assert!(
        codes(&turned).contains(&"client_secret_present"),
        "{:?}",
        turned.findings
    );
    // Asked again at once: the invalid document is remembered as a failure (not fetched
    // again during its backoff), never served from the document cache.
    let again = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(again.decision(), Decision::Deny);
    assert!(codes(&again).contains(&"client_secret_present"));
    assert_eq!(
        setup
            .docs
            .seen("app.example.com", "/oauth/client.json")
            .len(),
        3,
        "no fetch during the backoff"
    );

    // no-store: every decision fetches.
    setup.docs.route(
        "zed.dev",
        "/oauth/client-metadata.json",
        Behaviour::Document {
            body: fixture("zed.proposed.json").1,
            content_type: "application/json".to_owned(),
            headers: vec![("Cache-Control".to_owned(), "no-store".to_owned())],
            delay: Duration::ZERO,
        },
    );
    for _ in 0..2 {
        let response = evaluate(
            &mut client,
            cimd("https://zed.dev/oauth/client-metadata.json", ""),
        )
        .await;
        assert_eq!(response.cimd.unwrap().cache, "miss");
    }
    assert_eq!(
        setup
            .docs
            .seen("zed.dev", "/oauth/client-metadata.json")
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_denied_with_a_specific_finding_and_never_cached() {
    // Failures not remembered either, so each attempt fetches (remembering is tested below).
    let setup = setup(true, "failure_backoff_ms = 0\n").await;
    let mut client = setup.server.registration().await;
    let valid = |client_id: &str| {
        format!(
            r#"{{"client_id":"{client_id}","client_name":"C","redirect_uris":["https://app.example.com/cb"],"token_endpoint_auth_method":"none"}}"#
        )
    };
    let faults: Vec<(&str, Behaviour, &str)> = vec![
        ("/hang", Behaviour::Hang, "timeout"),
        (
            "/huge-announced",
            Behaviour::Huge {
                size: 10 << 20,
                announce_length: true,
            },
            "too_large",
        ),
        (
            "/huge-streamed",
            Behaviour::Huge {
                size: 10 << 20,
                announce_length: false,
            },
            "too_large",
        ),
        (
            "/bomb",
            Behaviour::GzipBomb { inflated: 10 << 20 },
            "too_large",
        ),
        (
            "/moved",
            Behaviour::Redirect {
                status: 302,
                location: "https://app.example.com/v2/client.json".to_owned(),
            },
            "redirect_not_followed",
        ),
        (
            "/to-metadata",
            Behaviour::Redirect {
                status: 302,
                location: "http://169.254.169.254/".to_owned(),
            },
            "redirect_not_followed",
        ),
        (
            "/challenge",
            Behaviour::Status {
                status: 403,
                content_type: "text/html".to_owned(),
                body: b"<html>Just a moment...</html>".to_vec(),
            },
            "fetch_failed",
        ),
        (
            "/gone",
            Behaviour::Status {
                status: 404,
                content_type: "text/plain".to_owned(),
                body: b"not found".to_vec(),
            },
            "fetch_failed",
        ),
        (
            "/partial",
            Behaviour::Status {
                status: 203,
                content_type: "application/json".to_owned(),
                body: b"{}".to_vec(),
            },
            "status_not_200",
        ),
        (
            "/latin1",
            Behaviour::json(vec![b'{', 0xff, 0xfe, b'}']),
            "invalid_json",
        ),
        ("/array", Behaviour::json(b"[1,2]".to_vec()), "not_object"),
        (
            "/html",
            Behaviour::Document {
                body: valid("https://app.example.com/html").into_bytes(),
                content_type: "text/html".to_owned(),
                headers: Vec::new(),
                delay: Duration::ZERO,
            },
            "bad_media_type",
        ),
        (
            "/impersonation",
            Behaviour::json(
                valid("https://claude.ai/oauth/claude-code-client-metadata").into_bytes(),
            ),
            "client_id_mismatch",
        ),
    ];
    for (path, behaviour, _) in &faults {
        setup.docs.route("app.example.com", path, behaviour.clone());
    }
    for (path, _, code) in &faults {
        let client_id = format!("https://app.example.com{path}");
        for attempt in 1..=2 {
            let response = evaluate(&mut client, cimd(&client_id, "")).await;
            assert_eq!(response.decision(), Decision::Deny, "{path}");
            assert!(
                codes(&response).contains(code),
                "{path}: expected {code}, got {:?}",
                response.findings
            );
            assert_eq!(
                response.error.as_ref().unwrap().error,
                "invalid_client",
                "{path}"
            );
            assert_eq!(
                setup.docs.seen("app.example.com", path).len(),
                attempt,
                "{path}: nothing cached"
            );
        }
    }
    let redirect = evaluate(&mut client, cimd("https://app.example.com/to-metadata", "")).await;
    assert!(
        redirect.findings[0]
            .message
            .contains("http://169.254.169.254/"),
        "the Location is reported"
    );

    // The server is healthy afterwards.
    setup.docs.route(
        "app.example.com",
        "/ok",
        Behaviour::json(valid("https://app.example.com/ok").into_bytes()),
    );
    let ok = evaluate(&mut client, cimd("https://app.example.com/ok", "")).await;
    assert_eq!(
        ok.decision(),
        Decision::StepUp,
        "an unknown domain steps up: {:?}",
        ok.findings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn special_use_targets_are_refused_without_a_connection() {
    // allow_loopback is off: the name pinned to 127.0.0.1 is special-use and never fetched.
    let setup = setup(false, "").await;
    let mut client = setup.server.registration().await;
    setup
        .docs
        .route("pinned.example", "/c.json", Behaviour::json(b"{}".to_vec()));
    let pinned = evaluate(&mut client, cimd("https://pinned.example/c.json", "")).await;
    assert_eq!(pinned.decision(), Decision::Deny);
    assert_eq!(codes(&pinned), vec!["special_use_address"]);
    assert!(
        setup.docs.seen("pinned.example", "/c.json").is_empty(),
        "no request reached the server"
    );

    for client_id in [
        "https://127.0.0.1/c.json",
        "https://localhost/c.json",
        "https://[::1]/c.json",
        "https://0.0.0.0/c.json",
    ] {
        let refused = evaluate(&mut client, cimd(client_id, "")).await;
        assert_eq!(refused.decision(), Decision::Deny, "{client_id}");
        assert!(
            codes(&refused).contains(&"special_use_address"),
            "{client_id}: {:?}",
            refused.findings
        );
    }

    // The URL rules run before any network activity.
    let http = evaluate(&mut client, cimd("http://app.example.com/c.json", "")).await;
    assert_eq!(codes(&http), vec!["not_https"]);
    assert!(setup.docs.seen("app.example.com", "/c.json").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_loopback_never_lets_the_unspecified_address_through() {
    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("clientgate.toml");
    std::fs::write(
        &config,
        format!(
            "[cimd]\nallow_loopback = true\nca_file = \"{}\"\nresolve = {{ \"pinned.example\" = \"0.0.0.0:{}\" }}\n",
            docs.ca_file.display(),
            docs.addr.port()
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", &config.display().to_string()],
    );
    let mut client = server.registration().await;
    let refused = evaluate(&mut client, cimd("https://pinned.example/c.json", "")).await;
    assert_eq!(codes(&refused), vec!["special_use_address"]);
    assert!(docs.seen("pinned.example", "/c.json").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_survives_a_restart() {
    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = docs
        .write_config(config_dir.path(), true, "")
        .display()
        .to_string();
    let data = tempfile::tempdir().unwrap();
    let (client_id, body) = fixture("vscode.2026-09-08.json");
    let (host, path) = split(&client_id);
    docs.route(&host, &path, Behaviour::json(body));

    let server = Server::start(&starter_policies(), data.path(), &["--config", &config]);
    let first = evaluate(&mut server.registration().await, cimd(&client_id, "")).await;
    assert_eq!(first.cimd.unwrap().cache, "miss");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");

    let restarted = Server::start(&starter_policies(), data.path(), &["--config", &config]);
    let after = evaluate(&mut restarted.registration().await, cimd(&client_id, "")).await;
    assert_eq!(after.decision(), Decision::Approve);
    assert_eq!(after.cimd.unwrap().cache, "hit");
    assert_eq!(
        docs.seen(&host, &path).len(),
        1,
        "no fetch after the restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_host_cannot_take_every_fetch_slot() {
    let setup = setup(
        true,
        "max_in_flight = 3\nmax_in_flight_per_host = 2\nslot_wait_ms = 10000\n",
    )
    .await;
    for n in 0..9 {
        setup
            .docs
            .route("slow.example", &format!("/c{n}.json"), Behaviour::Hang);
    }
    let (client_id, body) = fixture("claude-code.2026-09-08.json");
    let (host, path) = split(&client_id);
    setup.docs.route(&host, &path, Behaviour::json(body));

    let stuck: Vec<_> = (0..9)
        .map(|n| {
            let server_url = setup.server.url();
            tokio::spawn(async move {
                let channel = Channel::from_shared(server_url)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let mut client = RegistrationServiceClient::new(channel);
                let request = cimd(&format!("https://slow.example/c{n}.json"), "");
                client.evaluate(request).await.map(|r| r.into_inner())
            })
        })
        .collect();
    // Let the slow calls take their slots: two fetch, seven wait for the host
    // (holding no global slot, so one is left for everyone else).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slow_seen = || -> usize {
        (0..9)
            .map(|n| {
                setup
                    .docs
                    .seen("slow.example", &format!("/c{n}.json"))
                    .len()
            })
            .sum()
    };
    for _ in 0..20 {
        if slow_seen() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(slow_seen(), 2, "two fetches in flight to the slow host");
    let mut client = setup.server.registration().await;
    let other_host = evaluate(&mut client, cimd(&client_id, "")).await;
    assert_eq!(
        other_host.decision(),
        Decision::Approve,
        "{:?}",
        other_host.findings
    );
    assert!(
        stuck.iter().all(|call| !call.is_finished()),
        "the other host had to wait for the slow host's calls to time out"
    );
    for call in stuck {
        let response = call.await.unwrap().unwrap();
        assert!(
            codes(&response).contains(&"timeout"),
            "{:?}",
            response.findings
        );
    }
}

/// F-6: 40 attacker calls over 20 hosts of one registrable domain (wildcard DNS), each
/// holding its fetch open, leave a legitimate client's fetch its slots: it is answered while
/// every attacker call is still waiting. The review measured 3–4 s for it.
#[tokio::test(flavor = "multi_thread")]
async fn an_attackers_wildcard_domain_cannot_starve_other_clients_of_fetch_slots() {
    let docs = DocServer::start().await;
    let hosts: Vec<String> = (0..20).map(|n| format!("a{n}.evil.example")).collect();
    for host in &hosts {
        for n in 0..2 {
            docs.route(host, &format!("/c{n}.json"), Behaviour::Hang);
        }
    }
    let (client_id, body) = fixture("claude-code.2026-09-08.json");
    let (host, path) = split(&client_id);
    docs.route(&host, &path, Behaviour::json(body));
    let config_dir = tempfile::tempdir().unwrap();
    // A global limit the attacker could fill alone by host (20 hosts × 4), a slot wait and
    // a fetch timeout long enough that no attacker call ends before the legitimate one.
    let config = docs.write_config_reaching(
        config_dir.path(),
        true,
        &hosts,
        "max_in_flight = 16\nmax_in_flight_per_host = 4\nmax_in_flight_per_domain = 4\nslot_wait_ms = 8000\n",
    );
    let config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("total_timeout_ms = 1500", "total_timeout_ms = 8000");
    let config_path = config_dir.path().join("starved.toml");
    std::fs::write(&config_path, config).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config_path.to_str().unwrap()],
    );
    let attackers: Vec<_> = hosts
        .iter()
        .flat_map(|host| (0..2).map(move |n| format!("https://{host}/c{n}.json")))
        .map(|client_id| {
            let url = server.url();
            tokio::spawn(async move {
                let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
                RegistrationServiceClient::new(channel)
                    .evaluate(cimd(&client_id, ""))
                    .await
                    .map(|response| response.into_inner())
            })
        })
        .collect();
    let attacker_fetches = || -> usize {
        hosts
            .iter()
            .map(|host| {
                (0..2)
                    .map(|n| docs.seen(host, &format!("/c{n}.json")).len())
                    .sum::<usize>()
            })
            .sum()
    };
    for _ in 0..100 {
        if attacker_fetches() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        attacker_fetches(),
        4,
        "one registrable domain gets max_in_flight_per_domain fetches, however many hosts it has"
    );
    let mut client = server.registration().await;
    let started = std::time::Instant::now();
    let legitimate = evaluate(&mut client, cimd(&client_id, "")).await;
    let latency = started.elapsed();
    println!("a legitimate CIMD call under the slot-starvation attack took {latency:?}");
    assert_eq!(
        legitimate.decision(),
        Decision::Approve,
        "{:?}",
        legitimate.findings
    );
    assert_eq!(
        legitimate.cimd.unwrap().cache,
        "miss",
        "fetched, not cached"
    );
    assert!(
        attackers.iter().all(|call| !call.is_finished()),
        "the legitimate call was answered while every attacker call still waited"
    );
    for call in attackers {
        call.abort();
    }
}

/// F-6: a failing URL is not fetched again while its backoff lasts: twenty calls, one
/// fetch, each answered with the remembered finding.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_url_is_remembered_and_not_fetched_again_at_once() {
    let setup = setup(true, "").await;
    let mut client = setup.server.registration().await;
    setup.docs.route(
        "app.example.com",
        "/gone.json",
        Behaviour::Status {
            status: 404,
            content_type: "text/plain".to_owned(),
            body: b"not found".to_vec(),
        },
    );
    let client_id = "https://app.example.com/gone.json";
    for attempt in 0..20 {
        let response = evaluate(&mut client, cimd(client_id, "")).await;
        assert_eq!(response.decision(), Decision::Deny);
        assert!(
            codes(&response).contains(&"fetch_failed"),
            "{:?}",
            response.findings
        );
        if attempt > 0 {
            assert!(
                response.findings[0]
                    .message
                    .contains("not fetched again for"),
                "{}",
                response.findings[0].message
            );
        }
    }
    assert_eq!(setup.docs.seen("app.example.com", "/gone.json").len(), 1);
}

/// CIMD WG issue #77: while refetching fails for a transient reason, the last good
/// document keeps serving, marked `stale`.
#[tokio::test(flavor = "multi_thread")]
async fn the_last_good_document_serves_while_a_refetch_fails() {
    let setup = setup(true, "cache_min_secs = 0\n").await;
    let mut client = setup.server.registration().await;
    let (client_id, body) = fixture("claude-code.2026-09-08.json");
    let (host, path) = split(&client_id);
    setup.docs.route(
        &host,
        &path,
        Behaviour::Document {
            body,
            content_type: "application/json".to_owned(),
            headers: vec![("Cache-Control".to_owned(), "max-age=1".to_owned())],
            delay: Duration::ZERO,
        },
    );
    let first = evaluate(&mut client, cimd(&client_id, "")).await;
    assert_eq!(first.decision(), Decision::Approve, "{:?}", first.findings);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    setup.docs.route(
        &host,
        &path,
        Behaviour::Status {
            status: 503,
            content_type: "text/plain".to_owned(),
            body: b"down for maintenance".to_vec(),
        },
    );
    let during = evaluate(&mut client, cimd(&client_id, "")).await;
    assert_eq!(
        during.decision(),
        Decision::Approve,
        "{:?}",
        during.findings
    );
    let info = during.cimd.unwrap();
    assert_eq!(info.cache, "stale");
    assert_eq!(info.document_sha256, first.cimd.unwrap().document_sha256);
    assert_eq!(
        setup.docs.seen(&host, &path).len(),
        2,
        "it did try to refetch"
    );
}

/// F-6: with `cimd.allowed_ports`, a client_id on another port is refused before any
/// connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_port_outside_allowed_ports_is_refused_without_a_connection() {
    let setup = setup(true, "allowed_ports = [443]\n").await;
    let mut client = setup.server.registration().await;
    let response = evaluate(&mut client, cimd("https://app.example.com:8443/c.json", "")).await;
    assert_eq!(response.decision(), Decision::Deny);
    assert!(
        codes(&response).contains(&"port_not_allowed"),
        "{:?}",
        response.findings
    );
    assert!(setup.docs.seen("app.example.com", "/c.json").is_empty());
}

/// F-16: a failed connection reads the same whatever the library said, and says nothing a
/// scanner could use.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connection_is_reported_in_a_few_stable_words() {
    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = docs.write_config(config_dir.path(), true, "failure_backoff_ms = 0\n");
    // Port 9 on loopback: nothing listens, the connection is refused.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "resolve = { ",
        "resolve = { \"down.evil.example\" = \"127.0.0.1:9\", ",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut client = server.registration().await;
    let response = evaluate(&mut client, cimd("https://down.evil.example/c.json", "")).await;
    assert_eq!(response.decision(), Decision::Deny);
    let finding = &response.findings[0];
    assert_eq!(finding.code, "fetch_failed");
    assert_eq!(finding.message, "`down.evil.example` could not be reached");
    let description = response.error.unwrap().error_description;
    for leak in ["os error", "refused", "tcp connect", "hyper", "reqwest"] {
        assert!(!description.to_lowercase().contains(leak), "{description}");
    }
}

/// CIMD -02 §4.4, §8.4: a document in use is fetched again every `cimd.refresh_secs` however
/// long its cache headers say; when it comes back with other redirect URIs than the tenant
/// approved, the answer says which members changed and the starter policies hold it for an
/// administrator — on every decision, cached or not, until one approves the new document.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_that_changes_its_redirect_uris_is_held_until_an_approval() {
    use clientgate::proto::step_up_service_client::StepUpServiceClient;
    use clientgate::proto::{ResolveStepUpRequest, StepUpProof};
    let setup = setup(true, "cache_min_secs = 0\nrefresh_secs = 1\n").await;
    let mut client = setup.server.registration().await;
    let client_id = "https://vscode.dev/oauth/changing.json";
    let document = |redirects: &str, etag: &str| {
        Behaviour::Revalidating {
        body: format!(
            r#"{{"client_id":"{client_id}","client_name":"Changing","redirect_uris":[{redirects}],"token_endpoint_auth_method":"none"}}"#
        )
        .into_bytes(),
        etag: etag.to_owned(),
        max_age: 3600,
    }
    };
    let (host, path) = split(client_id);
    setup.docs.route(
        &host,
        &path,
        document(r#""https://vscode.dev/cb""#, "\"v1\""),
    );
    let first = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(first.decision(), Decision::Approve, "{first:?}");
    assert!(first.cimd.unwrap().changed_members.is_empty());

    // Fresh for an hour by its headers, but older than refresh_secs: fetched again.
    setup.docs.route(
        &host,
        &path,
        document(
            r#""https://vscode.dev/cb","https://vscode.dev/other""#,
            "\"v2\"",
        ),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changed = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(
        setup.docs.seen(&host, &path).len(),
        2,
        "refetched while fresh"
    );
    assert_eq!(changed.decision(), Decision::StepUp, "{changed:?}");
    assert_eq!(
        changed.reasons[0].policy_id,
        "step_up_changed_cimd_redirects_or_keys"
    );
    assert_eq!(
        changed.cimd.as_ref().unwrap().changed_members,
        ["redirect_uris"]
    );
    assert!(codes(&changed).contains(&"document_redirect_uris_changed"));

    // Served from the cache again: the change is still news.
    let again = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(again.cimd.as_ref().unwrap().cache, "hit");
    assert_eq!(again.decision(), Decision::StepUp);

    // Served with no-store, so nothing stays cached: still compared with what was approved.
    setup.docs.route(
        &host,
        &path,
        Behaviour::Document {
            body: format!(
                r#"{{"client_id":"{client_id}","client_name":"Changing","redirect_uris":["https://vscode.dev/cb","https://vscode.dev/other"],"token_endpoint_auth_method":"none"}}"#
            )
            .into_bytes(),
            content_type: "application/json".to_owned(),
            headers: vec![("Cache-Control".to_owned(), "no-store".to_owned())],
            delay: Duration::ZERO,
        },
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        let uncached = evaluate(&mut client, cimd(client_id, "")).await;
        assert_eq!(uncached.cimd.as_ref().unwrap().cache, "miss");
        assert_eq!(uncached.decision(), Decision::StepUp, "{uncached:?}");
    }

    // Another tenant never approved this client_id: the document is new to it, not changed.
    let elsewhere = evaluate(
        &mut client,
        EvaluateRequest {
            tenant: "other-tenant".to_owned(),
            ..cimd(client_id, "")
        },
    )
    .await;
    assert_eq!(elsewhere.decision(), Decision::Approve, "{elsewhere:?}");

    // An administrator approves; the approving decision acknowledges the change.
    let ticket_id = changed.step_up.unwrap().ticket_id;
    let mut step_ups = StepUpServiceClient::new(setup.server.channel().await);
    step_ups
        .resolve_step_up(ResolveStepUpRequest {
            ticket_id: ticket_id.clone(),
            approve: true,
            resolver: "ops@example.com".to_owned(),
            note: "the new callback is theirs".to_owned(),
        })
        .await
        .unwrap();
    let admitted = evaluate(
        &mut client,
        EvaluateRequest {
            step_up: Some(StepUpProof {
                ticket_id,
                completed_challenges: Vec::new(),
            }),
            ..cimd(client_id, "")
        },
    )
    .await;
    assert_eq!(admitted.decision(), Decision::Approve, "{admitted:?}");
    let next = evaluate(&mut client, cimd(client_id, "")).await;
    assert_eq!(next.decision(), Decision::Approve, "{next:?}");
    assert!(next.cimd.unwrap().changed_members.is_empty());
}

/// Issue 17 §3: claude.ai's document server answers data-centre fetches with a challenge, so
/// an operator pins the document in the known-clients registry. A pinned document decides
/// without any fetch; a pinned hash holds a fetched document to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_document_decides_without_a_fetch_and_a_pinned_hash_refuses_another() {
    use sha2::{Digest, Sha256};
    let policies = starter_copy();
    let registry_path = policies.path().join("known-clients.toml");
    let registry = std::fs::read_to_string(&registry_path).unwrap();
    let (claude_id, claude_body) = fixture("claude-ai-connectors.2026-09-19.json");
    let (vscode_id, vscode_body) = fixture("vscode.2026-09-08.json");
    let other_sha = hex::encode(Sha256::digest(b"some other document"));
    let pinned = registry
        .replacen(
            "[[client]]\nid = \"codex\"",
            &format!(
                "[[client.pin]]\nclient_id = \"{claude_id}\"\ndocument = '''{}'''\n\n[[client]]\nid = \"codex\"",
                String::from_utf8(claude_body).unwrap()
            ),
            1,
        )
        .replacen(
            "[[client]]\nid = \"cursor\"",
            &format!(
                "[[client.pin]]\nclient_id = \"{vscode_id}\"\nsha256 = \"{other_sha}\"\n\n[[client]]\nid = \"cursor\""
            ),
            1,
        );
    assert_ne!(pinned, registry);
    std::fs::write(&registry_path, pinned).unwrap();

    let docs = DocServer::start().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = docs.write_config(config_dir.path(), true, "");
    let data = tempfile::tempdir().unwrap();
    let config_arg = config.display().to_string();
    let server = Server::start(policies.path(), data.path(), &["--config", &config_arg]);
    let mut client = server.registration().await;

    let answer = evaluate(&mut client, cimd(&claude_id, "")).await;
    assert_eq!(answer.decision(), Decision::Approve, "{answer:?}");
    assert_eq!(answer.cimd.unwrap().cache, "pinned");
    let (host, path) = split(&claude_id);
    assert!(
        docs.seen(&host, &path).is_empty(),
        "a pinned document is not fetched"
    );

    let (host, path) = split(&vscode_id);
    docs.route(
        &host,
        &path,
        Behaviour::Document {
            body: vscode_body,
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        },
    );
    let refused = evaluate(&mut client, cimd(&vscode_id, "")).await;
    assert_eq!(refused.decision(), Decision::Deny, "{refused:?}");
    assert!(
        codes(&refused).contains(&"pinned_document_mismatch"),
        "{:?}",
        refused.findings
    );
    assert_eq!(
        docs.seen(&host, &path).len(),
        1,
        "a pinned hash is checked on a fetch"
    );
}
