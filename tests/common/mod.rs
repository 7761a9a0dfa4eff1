//! A harness that runs the real `clientgate` binary on 127.0.0.1:0 and talks to it with
//! tonic clients.

#![allow(dead_code)]

pub mod doc_server;
pub mod postgres;
pub mod records;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clientgate::proto::admin_service_client::AdminServiceClient;
use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::{Caller, DcrRegistration, EvaluateRequest, evaluate_request};
use tonic::transport::Channel;

/// The starter policy pack shipped in `policies/`.
pub fn starter_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A copy of the starter policies, their test suites included, that a test may change.
pub fn starter_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&starter_policies(), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A running clientgate process.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `clientgate serve` and waits until it listens.
    pub fn start(policies: &Path, data: &Path, extra_args: &[&str]) -> Server {
        match Server::try_start(policies, data, extra_args) {
            Ok(server) => server,
            Err((status, log)) => panic!("clientgate did not start ({status:?}):\n{log}"),
        }
    }

    /// Starts `clientgate serve`; on failure returns its exit status and everything it logged.
    pub fn try_start(
        policies: &Path,
        data: &Path,
        extra_args: &[&str],
    ) -> Result<Server, (Option<ExitStatus>, String)> {
        Server::try_start_command(Server::command(policies, data, extra_args))
    }

    /// The command that [`Server::start`] runs, for a test to adjust before it starts it.
    pub fn command(policies: &Path, data: &Path, extra_args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clientgate"));
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--policies")
            .arg(policies)
            .arg("--data")
            .arg(data)
            .args(extra_args)
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `command` (a `clientgate serve`) and waits until it listens.
    pub fn try_start_command(mut command: Command) -> Result<Server, (Option<ExitStatus>, String)> {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the clientgate binary runs");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_sender, lines) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log_writer.lock().unwrap().push_str(&(line.clone() + "\n"));
                let _ = lines_sender.send(line);
            }
        });
        loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains("clientgate listening") => {
                    let addr = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("addr="))
                        .expect("the listening line names addr=")
                        .to_owned();
                    return Ok(Server {
                        child: Some(child),
                        addr,
                        log,
                    });
                }
                Ok(_) => continue,
                Err(_) => {
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    let log = log.lock().unwrap().clone();
                    return Err((status, log));
                }
            }
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connects to clientgate")
    }

    pub async fn registration(&self) -> RegistrationServiceClient<Channel> {
        RegistrationServiceClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel().await)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGHUP (reload the policies).
    pub fn hangup(&self) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().expect("clientgate exits");
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An Evaluate request for a DCR body from `ip`.
pub fn dcr(metadata_json: &str, ip: &str) -> EvaluateRequest {
    EvaluateRequest {
        registration: Some(evaluate_request::Registration::Dcr(DcrRegistration {
            metadata_json: metadata_json.to_owned(),
            initial_access_token: false,
        })),
        caller: Some(Caller {
            ip: ip.to_owned(),
            ..Caller::default()
        }),
        ..EvaluateRequest::default()
    }
}

pub const WEB_CLIENT: &str = r#"{"client_name":"Example","client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/callback"]}"#;
pub const BLOCKED_CLIENT: &str =
    r#"{"client_name":"Example","redirect_uris":["https://login.evil.example/cb"]}"#;
pub const CROSS_DOMAIN_CLIENT: &str = r#"{"client_name":"Example","client_uri":"https://app.example.com","redirect_uris":["https://callbacks.other.example.net/cb"]}"#;
pub const LOOPBACK_CLIENT: &str = r#"{"client_name":"CLI","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}"#;
pub const FRAGMENT_CLIENT: &str = r#"{"redirect_uris":["https://c.example/cb#frag"]}"#;

/// An HTTP client for clientgate's admin HTTP surface on loopback: no proxy, no redirects
/// followed (a test sees the console's 303s).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden form field `name` in a console page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("the form has the field") + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}
