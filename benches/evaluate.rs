//! Prints what a decision costs, with the starter policies:
//!
//! 1. the pure pipeline (validate → signals → Cedar → outcome), single-threaded;
//! 2. `Evaluate` over gRPC on loopback against the real server, recording every decision
//!    durably, with concurrent callers (group commit), for DCR bodies and for a CIMD client
//!    whose document is cached (served once by a local HTTPS document server);
//! 3. the same DCR calls with a shadow (candidate) policy set that disagrees on some of
//!    them, so each call is decided twice and disagreements are written.
//!
//! Run with `cargo bench --bench evaluate`. Figures, not pass/fail: it asserts nothing
//! about speed.

#[allow(dead_code)]
#[path = "../tests/common/doc_server.rs"]
mod doc_server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use clientgate::config::{Config, Overrides};
use clientgate::engine::{EngineSettings, EvaluateInput, Registration, decide_dcr};
use clientgate::policy::load_policy_dir;
use clientgate::proto::registration_service_client::RegistrationServiceClient;
use clientgate::proto::{
    Caller, CimdRegistration, DcrRegistration, EvaluateRequest, evaluate_request,
};

const BODIES: &[&str] = &[
    r#"{"client_name":"Example","client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/callback"],"token_endpoint_auth_method":"none"}"#,
    r#"{"client_name":"Claude Code","client_uri":"https://claude.ai","redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"}"#,
    r#"{"client_name":"Example","client_uri":"https://app.example.com","redirect_uris":["https://callbacks.example.net/oauth"]}"#,
    r#"{"client_name":"Example","redirect_uris":["https://login.evil.example/callback"]}"#,
];

fn main() {
    let policies_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    pure_pipeline(&policies_dir);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let docs = doc_server::DocServer::start().await;
        let claude = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/real-cimd/claude-code.2026-09-08.json"),
        )
        .expect("fixture");
        docs.route(
            "claude.ai",
            "/oauth/claude-code-client-metadata",
            doc_server::Behaviour::json(claude),
        );
        let config_dir = tempfile::tempdir().expect("temp dir");
        let config_file = docs.write_config(config_dir.path(), true, "");
        for concurrency in [1, 16, 64] {
            over_grpc(
                &policies_dir,
                &config_file,
                Kind::Dcr,
                concurrency,
                4000,
                None,
            )
            .await;
            over_grpc(
                &policies_dir,
                &config_file,
                Kind::CachedCimd,
                concurrency,
                4000,
                None,
            )
            .await;
        }
        let candidate = candidate_policies(&policies_dir);
        for concurrency in [1, 16] {
            over_grpc(
                &policies_dir,
                &config_file,
                Kind::Dcr,
                concurrency,
                4000,
                Some(candidate.path()),
            )
            .await;
        }
    });
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Dcr,
    CachedCimd,
}

fn request(kind: Kind, n: usize, task: usize) -> EvaluateRequest {
    let registration = match kind {
        Kind::Dcr => evaluate_request::Registration::Dcr(DcrRegistration {
            metadata_json: BODIES[(task + n) % BODIES.len()].to_owned(),
            initial_access_token: false,
        }),
        Kind::CachedCimd => evaluate_request::Registration::Cimd(CimdRegistration {
            client_id: "https://claude.ai/oauth/claude-code-client-metadata".to_owned(),
            redirect_uri: "http://localhost:53682/callback".to_owned(),
        }),
    };
    EvaluateRequest {
        registration: Some(registration),
        caller: Some(Caller {
            ip: format!("203.0.113.{}", task % 250),
            ..Caller::default()
        }),
        ..EvaluateRequest::default()
    }
}

fn pure_pipeline(policies_dir: &Path) {
    let policies = load_policy_dir(policies_dir).expect("starter policies load");
    let settings = clientgate::app::engine_settings(&clientgate::config::Config::default())
        .expect("default settings");
    let inputs: Vec<EvaluateInput> = BODIES
        .iter()
        .map(|body| EvaluateInput {
            tenant: "default".to_owned(),
            registration: Registration::Dcr {
                metadata_json: body.to_string(),
                initial_access_token: false,
            },
            caller: clientgate::vocab::Caller {
                ip: Some("203.0.113.7".parse().unwrap()),
                ..Default::default()
            },
            step_up_ticket: String::new(),
            completed_challenges: Vec::new(),
            dry_run: true,
            explain: false,
        })
        .collect();
    let rounds = 20_000;
    for input in inputs.iter().cycle().take(2_000) {
        decide(&policies, &settings, input);
    }
    let started = Instant::now();
    for input in inputs.iter().cycle().take(rounds) {
        decide(&policies, &settings, input);
    }
    let elapsed = started.elapsed();
    println!(
        "pure pipeline ({} policies): {:.1} µs per decision, {:.0} decisions/s on one core",
        policies.policy_count(),
        elapsed.as_secs_f64() * 1e6 / rounds as f64,
        rounds as f64 / elapsed.as_secs_f64()
    );
}

fn decide(
    policies: &clientgate::policy::PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
) {
    let Registration::Dcr { metadata_json, .. } = &input.registration else {
        unreachable!("the bench sends DCR only")
    };
    std::hint::black_box(decide_dcr(
        policies,
        settings,
        input,
        metadata_json,
        false,
        None,
        SystemTime::now(),
    ));
}

/// The starter policies plus a forbid on `example.com` redirect domains: a candidate set
/// that disagrees with the live one on some of the benchmark's registrations.
fn candidate_policies(policies_dir: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(policies_dir).expect("policies") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(
        dir.path().join("40-candidate.cedar"),
        "@id(\"retire_example_com\")\n@reason(\"example.com clients are retired\")\nforbid (principal, action in Action::\"register\", resource)\nwhen { principal.redirect_domains.contains(\"example.com\") };\n",
    )
    .expect("candidate policy");
    dir
}

async fn over_grpc(
    policies_dir: &Path,
    config_file: &Path,
    kind: Kind,
    concurrency: usize,
    total: usize,
    shadow: Option<&Path>,
) {
    let data = tempfile::tempdir().expect("temp dir");
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".to_owned()),
        policies: Some(policies_dir.to_owned()),
        data: Some(data.path().to_owned()),
        shadow_policies: shadow.map(Path::to_owned),
        ..Overrides::default()
    };
    let config = Config::load(Some(config_file), Vec::new(), &overrides)
        .expect("config")
        .config;
    let (addr_sender, addr_receiver) = tokio::sync::oneshot::channel();
    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(clientgate::service::run(
        config,
        async {
            let _ = stop_receiver.await;
        },
        move |addr| {
            let _ = addr_sender.send(addr);
        },
    ));
    let addr = addr_receiver.await.expect("the server listens");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connects");
    // Warm up: the first CIMD call fetches; every measured one is a cache hit.
    let mut warm = RegistrationServiceClient::new(channel.clone());
    warm.evaluate(request(kind, 0, 0)).await.expect("warm-up");
    let per_task = total / concurrency;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let mut client = RegistrationServiceClient::new(channel.clone());
            let latencies = latencies.clone();
            tokio::spawn(async move {
                for n in 0..per_task {
                    let request = request(kind, n, task);
                    let sent = Instant::now();
                    client.evaluate(request).await.expect("evaluate");
                    latencies.lock().unwrap().push(sent.elapsed());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let done = latencies.len();
    let _ = stop_sender.send(());
    let stats = server.await.unwrap().expect("clean stop");
    let size = dir_size(data.path());
    let label = if shadow.is_some() {
        format!("{kind:?} with shadow policies")
    } else {
        format!("{kind:?}")
    };
    println!(
        "{label} Evaluate over gRPC, recorded durably, {concurrency:>2} concurrent callers: {:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms; {done} decisions in {} flushes ({:.1} per flush), store {:.1} MiB",
        done as f64 / elapsed.as_secs_f64(),
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        stats.flushes,
        stats.decisions_recorded as f64 / stats.flushes.max(1) as f64,
        size as f64 / (1024.0 * 1024.0),
    );
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        entry.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
