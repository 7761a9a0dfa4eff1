//! `clientgate bench`: time decisions of the pure pipeline with these policies (no store,
//! no network), on the suites' registrations or built-in samples.

use std::net::IpAddr;
use std::process::ExitCode;

use super::policies::{PolicyArgs, load, read_suites};
use crate::authoring::offline::{OfflineCase, OfflineRegistration, Stubs};
use crate::authoring::suite::offline_case;
use crate::vocab::Caller;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// How many decisions to time.
    #[arg(long, default_value_t = 20_000)]
    decisions: usize,
}

/// Registrations decided when the policy directory has no test suites.
const SAMPLE_REGISTRATIONS: &[&str] = &[
    r#"{"client_name":"Web","client_uri":"https://app.example.com","redirect_uris":["https://app.example.com/callback"]}"#,
    r#"{"client_name":"CLI","redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none"}"#,
    r#"{"client_name":"Elsewhere","client_uri":"https://famous.example","redirect_uris":["https://other.example.net/cb"]}"#,
];

pub fn bench(args: BenchArgs) -> ExitCode {
    let loaded = match load(&args.policy, false) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let tests_dir = loaded.config.policy.dir.join("tests");
    let (suites, _) = read_suites(&tests_dir);
    let mut cases = Vec::new();
    for file in &suites {
        cases.extend(
            file.suite
                .cases
                .iter()
                .filter_map(|case| offline_case(case, &|path| file.read(path)).ok()),
        );
    }
    let source = if cases.is_empty() {
        cases = SAMPLE_REGISTRATIONS
            .iter()
            .map(|metadata_json| OfflineCase {
                tenant: "default".to_owned(),
                caller: Caller {
                    ip: Some(IpAddr::from([203, 0, 113, 7])),
                    ..Caller::default()
                },
                registration: OfflineRegistration::Dcr {
                    metadata_json: metadata_json.to_string(),
                    initial_access_token: false,
                },
                stubs: Stubs::default(),
                explain: false,
            })
            .collect();
        "built-in samples".to_owned()
    } else {
        tests_dir.display().to_string()
    };
    match crate::authoring::bench::run(&loaded.policies, &loaded.settings, &cases, args.decisions) {
        Ok(report) => {
            println!(
                "{} policies (version {}), {} registrations from {source}, {} decisions",
                loaded.policies.policy_count(),
                loaded.policies.version,
                report.cases,
                report.decisions,
            );
            println!(
                "{:.0} decisions/s on one thread; mean {} µs, p50 {} µs, p99 {} µs, max {} µs",
                report.per_second(),
                report.mean().as_micros(),
                report.p50.as_micros(),
                report.p99.as_micros(),
                report.max.as_micros(),
            );
            println!(
                "(validation, signals and Cedar only: a served Evaluate adds the gRPC call and the \
                 durable write, see `cargo bench`)"
            );
            if cfg!(debug_assertions) {
                println!(
                    "note: this is a debug build, roughly 15 times slower; use `cargo run --release -- bench`"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("clientgate: {error}");
            ExitCode::FAILURE
        }
    }
}
