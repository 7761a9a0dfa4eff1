//! Listener limits (review F-7): a flood of idle sockets does not keep a new caller out,
//! even when the server starts with the default limit of 1,024 open files, and sockets that
//! never speak are closed.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const IDLE_SOCKETS: usize = 1_100;

#[tokio::test(flavor = "multi_thread")]
async fn eleven_hundred_idle_sockets_do_not_keep_a_health_check_out() {
    let own_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        own_limit >= IDLE_SOCKETS as u64 + 200,
        "this test needs {} open files for its own sockets; the hard limit here is {own_limit}",
        IDLE_SOCKETS + 200
    );
    let data = tempfile::tempdir().unwrap();
    // The server starts with a soft limit of 1,024 open files, as on a default system.
    let server_command = Server::command(&starter_policies(), data.path(), &[]);
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg("ulimit -S -n 1024 && exec \"$0\" \"$@\"")
        .arg(server_command.get_program())
        .args(server_command.get_args())
        .env_remove("RUST_LOG")
        .env("CLIENTGATE_SERVER_FIRST_BYTE_TIMEOUT_MS", "1000");
    let server = match Server::try_start_command(wrapped) {
        Ok(server) => server,
        Err((status, log)) => panic!("clientgate did not start ({status:?}):\n{log}"),
    };
    assert!(
        server.log().contains("open-file limit"),
        "the server says what limit it runs with:\n{}",
        server.log()
    );

    let idle: Vec<TcpStream> = (0..IDLE_SOCKETS)
        .map(|_| TcpStream::connect(&server.addr).expect("an idle socket connects"))
        .collect();

    let started = Instant::now();
    let mut answered = false;
    while started.elapsed() < Duration::from_secs(10) {
        let check = async {
            let mut health = HealthClient::new(server.channel().await);
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
        };
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), check).await {
            assert_eq!(response.into_inner().status, 1);
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "a new caller was kept out by {IDLE_SOCKETS} idle sockets"
    );
    eprintln!(
        "health answered {} ms after {IDLE_SOCKETS} idle sockets connected",
        started.elapsed().as_millis()
    );

    // The idle sockets sent nothing: the server closes them after the first-byte deadline
    // (what they read before the close is the server's HTTP/2 settings).
    for socket in idle.iter().step_by(100) {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 256];
        let closed = loop {
            match (&*socket).read(&mut buffer) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(error) => {
                    break !matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        };
        assert!(closed, "a silent socket is closed by the server");
    }
}
