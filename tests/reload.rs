//! Hot reload and shadow rollout, on a running server: a reload under load never fails a
//! call and never mixes sets, an invalid set is refused while the last good one serves,
//! the directory watcher and SIGHUP reload, and shadow disagreements are listed.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clientgate::proto::{
    Decision, GetPolicyStatusRequest, ListShadowDisagreementsRequest, PolicyStatus,
    ReloadPoliciesRequest,
};
use common::*;

/// A forbid that turns the starter pack's approval of `app.example.com` clients into a
/// denial.
const DENY_EXAMPLE_COM: &str = r#"@id("deny_example_com")
@reason("example.com clients are retired")
@error("invalid_client_metadata")
forbid (principal, action in Action::"register", resource)
when { principal.redirect_domains.contains("example.com") };
"#;

const BROKEN: &str = "@id(\"broken\")\n@reason(\"r\")\nforbid (principal, action, resource)\nwhen { principal.no_such_attribute };\n";

/// Writes `name` in `dir` in one step (write aside, then rename), as a deploy would.
fn put(dir: &Path, name: &str, text: &str) {
    let aside = dir.join(format!(".{name}.partial"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, dir.join(name)).unwrap();
}

fn config(dir: &Path, text: &str) -> String {
    let path = dir.join("clientgate.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn web_client(n: u64) -> String {
    // A distinct name per call: no repeat or flood policy applies.
    format!(
        r#"{{"client_name":"Load {n}","client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/callback"]}}"#
    )
}

async fn status(server: &Server) -> PolicyStatus {
    server
        .admin()
        .await
        .get_policy_status(GetPolicyStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn wait_for(
    server: &Server,
    what: &str,
    done: impl Fn(&PolicyStatus) -> bool,
) -> PolicyStatus {
    for _ in 0..200 {
        let status = status(server).await;
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloading_under_load_fails_no_call_and_never_mixes_sets() {
    let policies = starter_copy();
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), "[policy]\nwatch = false\n");
    let server = Server::start(policies.path(), data.path(), &["--config", &config]);
    let version_a = status(&server).await.version;

    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4u64)
        .map(|lane| {
            let stop = stop.clone();
            let url = server.url();
            tokio::spawn(async move {
                let channel = tonic::transport::Channel::from_shared(url)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let mut client =
                    clientgate::proto::registration_service_client::RegistrationServiceClient::new(
                        channel,
                    );
                let mut seen = Vec::new();
                let mut n = lane;
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .evaluate(dcr(&web_client(n), ""))
                        .await
                        .unwrap_or_else(|status| panic!("call {n} failed: {status}"))
                        .into_inner();
                    seen.push((response.policy_version.clone(), response.decision()));
                    n += 4;
                }
                seen
            })
        })
        .collect();
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    pause().await;

    // good → another good set
    put(policies.path(), "40-retire.cedar", DENY_EXAMPLE_COM);
    let mut admin = server.admin().await;
    let reloaded = admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(reloaded.loaded, "{reloaded:?}");
    assert_eq!(reloaded.policy_count, 16);
    let version_b = reloaded.version.clone();
    assert_ne!(version_b, version_a);
    pause().await;

    // → bad: refused, the last good set keeps serving
    put(policies.path(), "50-broken.cedar", BROKEN);
    let refused = admin
        .reload_policies(ReloadPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.loaded);
    assert_eq!(
        refused.version, version_b,
        "the set in force did not change"
    );
    let problem = &refused.errors[0];
    assert!(problem.file.ends_with("50-broken.cedar"), "{problem:?}");
    assert_eq!(problem.line, 4, "{problem:?}");
    let shown = status(&server).await;
    assert_eq!(shown.version, version_b);
    assert!(
        shown.last_error.contains("50-broken.cedar:4:"),
        "GetPolicyStatus shows the refusal with file and line: {}",
        shown.last_error
    );
    assert!(shown.last_error_at.is_some());
    pause().await;

    // → good again, by SIGHUP
    std::fs::remove_file(policies.path().join("50-broken.cedar")).unwrap();
    std::fs::remove_file(policies.path().join("40-retire.cedar")).unwrap();
    server.hangup();
    let back = wait_for(&server, "the SIGHUP reload", |status| {
        status.version == version_a
    })
    .await;
    assert_eq!(back.last_error, "", "a good load clears the refusal");
    pause().await;

    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for caller in callers {
        seen.extend(caller.await.expect("no call failed"));
    }
    for (version, decision) in &seen {
        let expected = if *version == version_a {
            Decision::Approve
        } else if *version == version_b {
            Decision::Deny
        } else {
            panic!("a decision carries version {version}, which was never in force");
        };
        assert_eq!(
            *decision, expected,
            "version {version} decided {decision:?}"
        );
    }
    let count = |version: &str| seen.iter().filter(|(v, _)| v == version).count();
    println!(
        "{} calls during the reloads: {} under {version_a}, {} under {version_b}",
        seen.len(),
        count(&version_a),
        count(&version_b)
    );
    assert!(
        count(&version_b) > 0,
        "calls ran while the second set was in force"
    );
    assert_eq!(
        seen.last().unwrap().0,
        version_a,
        "the last calls ran on the restored set"
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watcher_reloads_a_changed_directory_and_refuses_a_broken_one() {
    let policies = starter_copy();
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), "[policy]\nreload_debounce_ms = 100\n");
    let server = Server::start(policies.path(), data.path(), &["--config", &config]);
    let version_a = status(&server).await.version;

    put(policies.path(), "40-retire.cedar", DENY_EXAMPLE_COM);
    let changed = wait_for(&server, "the watcher's reload", |status| {
        status.version != version_a
    })
    .await;
    assert_eq!(changed.policy_count, 16);
    let response = server
        .registration()
        .await
        .evaluate(dcr(&web_client(1), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.decision(), Decision::Deny);
    assert_eq!(response.policy_version, changed.version);

    put(policies.path(), "50-broken.cedar", BROKEN);
    let refused = wait_for(&server, "the refusal", |status| {
        !status.last_error.is_empty()
    })
    .await;
    assert_eq!(
        refused.version, changed.version,
        "the last good set keeps serving"
    );
    assert_eq!(refused.last_errors[0].line, 4);
    assert!(
        server
            .log()
            .contains("policies refused; the set in force keeps serving")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_disagreements_are_recorded_and_listed() {
    let candidate = starter_copy();
    put(candidate.path(), "40-retire.cedar", DENY_EXAMPLE_COM);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--shadow-policies", candidate.path().to_str().unwrap()],
    );
    let shown = status(&server).await;
    assert!(!shown.shadow_version.is_empty());
    assert_ne!(shown.shadow_version, shown.version);

    let mut client = server.registration().await;
    let differs = client
        .evaluate(dcr(WEB_CLIENT, "203.0.113.7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        differs.decision(),
        Decision::Approve,
        "the live set decides"
    );
    let agrees = client
        .evaluate(dcr(
            r#"{"client_name":"CLI","redirect_uris":["http://127.0.0.1/cb"]}"#,
            "203.0.113.7",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agrees.decision(), Decision::Approve);

    let listed = server
        .admin()
        .await
        .list_shadow_disagreements(ListShadowDisagreementsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.disagreements.len(), 1, "{listed:?}");
    let disagreement = &listed.disagreements[0];
    assert_eq!(disagreement.decision_id, differs.decision_id);
    assert_eq!(disagreement.live_decision(), Decision::Approve);
    assert_eq!(disagreement.candidate_decision(), Decision::Deny);
    assert_eq!(
        disagreement.live_policies,
        [
            "approve_https_or_loopback_redirects",
            "approve_dcr_clients_with_consent"
        ]
    );
    assert_eq!(disagreement.candidate_policies, ["deny_example_com"]);
    assert_eq!(disagreement.live_version, shown.version);
    assert_eq!(disagreement.candidate_version, shown.shadow_version);
    assert_eq!(disagreement.client_name, "Example");

    let bad_token = server
        .admin()
        .await
        .list_shadow_disagreements(ListShadowDisagreementsRequest {
            page_token: "nope".to_owned(),
            ..ListShadowDisagreementsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), tonic::Code::InvalidArgument);
    assert!(bad_token.message().contains("page_token"), "{bad_token:?}");
}

/// The known-clients registry reloads with the policies: a new entry is in force without a
/// restart, and a broken registry is refused while the last good set keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn the_known_clients_registry_reloads_with_the_policies() {
    let policies = starter_copy();
    let data = tempfile::tempdir().unwrap();
    let config = config(data.path(), "[policy]\nreload_debounce_ms = 100\n");
    let server = Server::start(policies.path(), data.path(), &["--config", &config]);
    let version_a = status(&server).await.version;
    let borrowed = r#"{"client_name":"Acme Agent","redirect_uris":["https://agent.acme.example/cb"],"token_endpoint_auth_method":"none"}"#;
    let before = server
        .registration()
        .await
        .evaluate(dcr(borrowed, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        before.decision(),
        Decision::Approve,
        "not yet a known client's name"
    );

    let path = policies.path().join("known-clients.toml");
    let registry = std::fs::read_to_string(&path).unwrap();
    let acme = "\n[[client]]\nid = \"acme-agent\"\nname = \"Acme Agent\"\npublisher = \"Acme\"\npublisher_domain = \"acme.example\"\ndcr_redirect_uris = [\"https://acme.example/oauth/cb\"]\nsource = \"test\"\nchecked = \"2026-12-01\"\n";
    std::fs::write(&path, format!("{registry}{acme}")).unwrap();
    let changed = wait_for(&server, "the registry's reload", |status| {
        status.version != version_a
    })
    .await;
    let after = server
        .registration()
        .await
        .evaluate(dcr(borrowed, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.decision(), Decision::StepUp, "{after:?}");
    assert_eq!(
        after.reasons[0].policy_id,
        "step_up_impersonated_known_clients"
    );

    std::fs::write(
        &path,
        format!("{registry}{acme}[[client]]\nid = \"Broken\"\n"),
    )
    .unwrap();
    let refused = wait_for(&server, "the refusal", |status| {
        !status.last_error.is_empty()
    })
    .await;
    assert_eq!(
        refused.version, changed.version,
        "the last good set keeps serving"
    );
    assert!(
        refused.last_error.contains("known-clients.toml"),
        "{}",
        refused.last_error
    );
}
