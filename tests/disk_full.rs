//! A full disk makes decisions UNAVAILABLE only while it is full (review F-4, F-9): the store
//! is taken out of service at its first failed write, health reports NOT_SERVING, and when
//! writes succeed again the store reopens by itself — no restart, nothing acknowledged lost.
//! A server started on a full disk starts, answers UNAVAILABLE, and recovers the same way.
//!
//! The full disk is the server's own file-size limit (`RLIMIT_FSIZE`, set on the running
//! process with util-linux's `prlimit`): a write past it fails with `EFBIG`, as one on a full
//! disk fails with `ENOSPC`, without filling any real disk and without privileges.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use clientgate::proto::{Decision, ListDecisionsRequest};
use common::{Server, WEB_CLIENT, dcr, starter_policies};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Sets the soft file-size limit of process `pid` (bytes, or "unlimited"); the hard limit
/// stays unlimited, so the limit can be raised again.
fn file_size_limit(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={soft} failed: {status}");
}

/// One Evaluate of a registration the starter policies approve, from its own address.
async fn evaluate(server: &Server, n: u32) -> Result<Decision, tonic::Status> {
    let request = dcr(WEB_CLIENT, &format!("203.0.113.{}", n % 250 + 1));
    let answer = server.registration().await.evaluate(request).await?;
    Ok(answer.into_inner().decision())
}

/// What health says of the server as a whole ("", what probes ask) and of the decision API,
/// when both say the same.
async fn health(server: &Server) -> Option<ServingStatus> {
    let mut health = HealthClient::new(server.channel().await);
    let mut said = Vec::new();
    for service in ["", "clientgate.v1.RegistrationService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
        said.push(ServingStatus::try_from(status).expect("a known status"));
    }
    (said[0] == said[1]).then_some(said[0])
}

/// Polls `check` every 50 ms until it is true, or fails naming `what` after 30 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Evaluates until the answer is not UNAVAILABLE; every answer on the way must be
/// UNAVAILABLE or an approval (never another error), and is counted.
async fn until_approved(server: &Server, from: u32) -> (u32, u32) {
    let started = Instant::now();
    let mut n = from;
    let mut unavailable = 0;
    loop {
        match evaluate(server, n).await {
            Ok(Decision::Approve) => return (n, unavailable),
            Ok(other) => panic!("call {n} was decided {other:?} while the disk recovered"),
            Err(status) if status.code() == tonic::Code::Unavailable => unavailable += 1,
            Err(status) => panic!("call {n} failed otherwise than UNAVAILABLE: {status:?}"),
        }
        n += 1;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the store did not recover within 30 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listed_approvals(server: &Server) -> Vec<String> {
    let page = server
        .admin()
        .await
        .list_decisions(ListDecisionsRequest {
            decision: Decision::Approve as i32,
            page_size: 1000,
            ..ListDecisionsRequest::default()
        })
        .await
        .expect("decisions are listed")
        .into_inner();
    page.decisions.into_iter().map(|d| d.decision_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_decisions_unavailable_until_it_has_room_again() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    assert_eq!(evaluate(&server, 0).await.unwrap(), Decision::Approve);
    let before = listed_approvals(&server).await;
    assert_eq!(before.len(), 1);

    // The disk fills up: no write of the server's can succeed.
    file_size_limit(server.pid(), "1");
    let status = evaluate(&server, 1)
        .await
        .expect_err("a decision that cannot be recorded is not answered");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    for n in 2..5 {
        let status = evaluate(&server, n).await.expect_err("still full");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    eventually("health reporting NOT_SERVING", || async {
        health(&server).await == Some(ServingStatus::NotServing)
    })
    .await;

    // Space returns: the store reopens by itself and decisions are recorded again.
    file_size_limit(server.pid(), "unlimited");
    let (approved_at, unavailable) = until_approved(&server, 5).await;
    eventually("health reporting SERVING", || async {
        health(&server).await == Some(ServingStatus::Serving)
    })
    .await;
    let after = listed_approvals(&server).await;
    assert!(
        after.contains(&before[0]),
        "the approval made before the disk filled is still recorded"
    );
    assert_eq!(after.len(), 2, "{after:?}");
    let (_, log) = server.stop();
    assert!(log.contains("the store failed"), "{log}");
    assert!(log.contains("the store opened again"), "{log}");
    assert!(
        log.contains("decisions_recorded=2 "),
        "the shutdown counts the decisions of both stores, and none that failed: {log}"
    );
    eprintln!("recovered at call {approved_at} after {unavailable} UNAVAILABLE answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_a_full_disk_serves_unavailable_then_recovers() {
    let data = tempfile::tempdir().unwrap();
    // A store with a decision in it, then a restart with no room to write.
    let first = Server::start(&starter_policies(), data.path(), &[]);
    assert_eq!(evaluate(&first, 0).await.unwrap(), Decision::Approve);
    let recorded = listed_approvals(&first).await;
    first.stop();

    let mut command = Command::new("prlimit");
    command
        .arg("--fsize=1:unlimited")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_clientgate"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--policies")
        .arg(starter_policies())
        .arg("--data")
        .arg(data.path())
        .env_remove("RUST_LOG");
    let server = match Server::try_start_command(command) {
        Ok(server) => server,
        Err((status, log)) => {
            panic!("clientgate did not start on a full disk ({status:?}):\n{log}")
        }
    };
    let status = evaluate(&server, 1).await.expect_err("no store yet");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("disk is full"),
        "the answer says why: {}",
        status.message()
    );
    eventually("health reporting NOT_SERVING", || async {
        health(&server).await == Some(ServingStatus::NotServing)
    })
    .await;

    file_size_limit(server.pid(), "unlimited");
    until_approved(&server, 2).await;
    let after = listed_approvals(&server).await;
    assert!(after.contains(&recorded[0]), "{after:?}");
    assert_eq!(after.len(), 2, "{after:?}");
}
