//! `clientgate check`, `eval` and `test`: the edges (files, network, printing) around the
//! pure tools of [`crate::authoring`].

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use crate::authoring::diagnostic::{Severity, render};
use crate::authoring::offline::{OfflineCase, OfflineRegistration, Stubs, decide_offline};
use crate::authoring::suite::{CaseResult, Suite, junit_xml, offline_case, parse_suite, run_suite};
use crate::cimd::fetch::{Fetched, Fetcher, Validators};
use crate::config::{Config, Overrides};
use crate::engine::{EngineSettings, Evaluated};
use crate::policy::{LoadError, PolicyBundle, load_policy_dir_with};
use crate::vocab::Caller;

/// Where the policies and the configuration come from.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The policy directory (default: ./policies, or `policy.dir` of the configuration).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// A TOML configuration file (profile, rate windows, trusted issuers, obligations…).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("registration").required(true).args(["dcr", "cimd"])))]
pub struct EvalArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// A DCR request body (JSON client metadata); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    dcr: Option<PathBuf>,
    /// A CIMD client_id URL; its document is fetched by the service's guarded fetcher
    /// unless --document gives it.
    #[arg(long, value_name = "URL")]
    cimd: Option<String>,
    /// The CIMD document to use instead of fetching it.
    #[arg(long, value_name = "FILE", requires = "cimd")]
    document: Option<PathBuf>,
    /// The authorization request's redirect_uri, matched against the CIMD document.
    #[arg(long, value_name = "URI", requires = "cimd")]
    redirect_uri: Option<String>,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The caller's IP address.
    #[arg(long)]
    ip: Option<IpAddr>,
    /// Also print the entities and context the policies saw.
    #[arg(long)]
    explain: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Also write the results as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

/// The configuration and the loaded policies, or the exit status after saying why not.
struct Loaded {
    config: Config,
    settings: EngineSettings,
    policies: PolicyBundle,
}

fn load(args: &PolicyArgs, print_warnings: bool) -> Result<Loaded, ExitCode> {
    let overrides = Overrides {
        policies: args.policies.clone(),
        ..Overrides::default()
    };
    let config =
        Config::load(args.config.as_deref(), std::env::vars(), &overrides).map_err(|errors| {
            eprint!("clientgate: {errors}");
            ExitCode::from(2)
        })?;
    let settings = crate::service::engine_settings(&config).map_err(|error| {
        eprintln!("clientgate: {error}");
        ExitCode::from(2)
    })?;
    let loaded = load_policy_dir_with(&config.policy.dir, &config.vocabulary())
        .and_then(|bundle| crate::service::fits_settings(bundle, &config.policy.dir, &settings));
    match loaded {
        Ok(policies) => {
            if print_warnings {
                print_problems(Severity::Warning, &policies.warnings);
            }
            Ok(Loaded {
                config,
                settings,
                policies,
            })
        }
        Err(errors) => {
            print_problems(Severity::Error, &errors.0);
            eprintln!(
                "{}: {} error(s); nothing was loaded",
                config.policy.dir.display(),
                errors.0.len()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

fn print_problems(severity: Severity, problems: &[LoadError]) {
    for problem in problems {
        let source = fs::read_to_string(&problem.file).ok();
        eprint!("{}", render(severity, problem, source.as_deref()));
    }
}

pub fn check(args: CheckArgs) -> ExitCode {
    match load(&args.policy, true) {
        Ok(loaded) => {
            println!(
                "{}: ok, {} policies, version {}, {} warning(s)",
                loaded.config.policy.dir.display(),
                loaded.policies.policy_count(),
                loaded.policies.version,
                loaded.policies.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(status) => status,
    }
}

pub fn eval(args: EvalArgs) -> ExitCode {
    let loaded = match load(&args.policy, false) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let registration = match registration(&args, &loaded.config) {
        Ok(registration) => registration,
        Err(message) => {
            eprintln!("clientgate: {message}");
            return ExitCode::from(2);
        }
    };
    let case = OfflineCase {
        tenant: args.tenant.clone(),
        caller: Caller {
            ip: args.ip,
            user_agent: String::new(),
            user_authenticated: false,
        },
        registration,
        stubs: Stubs::default(),
        explain: args.explain,
    };
    match decide_offline(&loaded.policies, &loaded.settings, &case, SystemTime::now()) {
        Ok(evaluated) => {
            if args.json {
                println!("{}", as_json(&evaluated));
            } else {
                print!("{}", as_text(&evaluated));
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("clientgate: {error}");
            ExitCode::from(2)
        }
    }
}

fn registration(args: &EvalArgs, config: &Config) -> Result<OfflineRegistration, String> {
    if let Some(path) = &args.dcr {
        let metadata_json = read_text(path)?;
        return Ok(OfflineRegistration::Dcr {
            metadata_json,
            initial_access_token: false,
        });
    }
    let client_id = args.cimd.clone().unwrap_or_default();
    let document = match &args.document {
        Some(path) => Ok(read_text(path)?.into_bytes()),
        None => fetch(&client_id, config)?,
    };
    Ok(OfflineRegistration::Cimd {
        client_id,
        redirect_uri: args.redirect_uri.clone().unwrap_or_default(),
        document,
    })
}

fn read_text(path: &Path) -> Result<String, String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read standard input: {error}"))?;
        return Ok(text);
    }
    fs::read_to_string(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))
}

/// Fetches a CIMD document with the service's guarded fetcher. A URL the client_id rules
/// refuse is not fetched (the decision says why); a failed fetch becomes its finding.
fn fetch(
    client_id: &str,
    config: &Config,
) -> Result<Result<Vec<u8>, crate::cimd::fetch::FetchFailure>, String> {
    let check = crate::cimd::client_id::check_client_id(
        client_id,
        config.validation.profile,
        config.cimd.allow_loopback,
    );
    let Some(url) = check.url else {
        return Ok(Ok(Vec::new()));
    };
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(async {
        let fetcher = Fetcher::new(crate::service::fetch_settings(config))
            .map_err(|error| error.to_string())?;
        Ok(match fetcher.fetch(&url, &Validators::default()).await {
            Ok(Fetched::Document { body, .. }) => Ok(body),
            Ok(Fetched::NotModified { .. }) => Ok(Vec::new()),
            Err(failure) => Err(failure),
        })
    })
}

fn decision_name(evaluated: &Evaluated) -> &'static str {
    match evaluated.decision {
        crate::vocab::Decision::Approve => "APPROVE",
        crate::vocab::Decision::Deny => "DENY",
        crate::vocab::Decision::StepUp => "STEP_UP",
    }
}

fn as_text(evaluated: &Evaluated) -> String {
    let mut text = format!("decision: {}\n", decision_name(evaluated));
    for reason in &evaluated.reasons {
        text.push_str(&format!(
            "reason: {}: {}\n",
            reason.policy_id, reason.message
        ));
    }
    if let Some((code, description)) = &evaluated.error {
        text.push_str(&format!("error: {}: {description}\n", code.as_str()));
    }
    if !evaluated.obligations.is_empty() {
        text.push_str(&format!(
            "obligations: {}\n",
            evaluated.obligations.join(", ")
        ));
    }
    if let Some(step_up) = &evaluated.step_up {
        text.push_str(&format!(
            "step-up challenges: {}\n",
            step_up.challenges.join(", ")
        ));
    }
    for finding in &evaluated.findings {
        text.push_str(&format!(
            "finding: {} {} {}: {}\n",
            if finding.is_error() {
                "error"
            } else {
                "warning"
            },
            finding.code.as_str(),
            if finding.field.is_empty() {
                "-"
            } else {
                &finding.field
            },
            finding.message
        ));
    }
    text.push_str(&format!("policy version: {}\n", evaluated.policy_version));
    if let Some(explain) = &evaluated.explain_json {
        let pretty = serde_json::from_str::<serde_json::Value>(explain)
            .and_then(|value| serde_json::to_string_pretty(&value))
            .unwrap_or_else(|_| explain.clone());
        text.push_str(&format!("explain: {pretty}\n"));
    }
    text
}

fn as_json(evaluated: &Evaluated) -> String {
    let explain = evaluated
        .explain_json
        .as_deref()
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
    let metadata = serde_json::from_str::<serde_json::Value>(&evaluated.client_metadata_json)
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "decision": decision_name(evaluated),
        "reasons": evaluated.reasons,
        "error": evaluated.error.as_ref().map(|(code, _)| code.as_str()),
        "error_description": evaluated.error.as_ref().map(|(_, text)| text),
        "obligations": evaluated.obligations,
        "step_up_challenges": evaluated.step_up.as_ref().map(|s| s.challenges.clone()),
        "findings": evaluated.findings.iter().map(|finding| serde_json::json!({
            "code": finding.code.as_str(),
            "severity": if finding.is_error() { "error" } else { "warning" },
            "field": finding.field,
            "message": finding.message,
        })).collect::<Vec<_>>(),
        "fingerprint": evaluated.fingerprint,
        "policy_version": evaluated.policy_version,
        "client_metadata": metadata,
        "explain": explain,
    })
    .to_string()
}

pub fn test(args: TestArgs) -> ExitCode {
    let loaded = match load(&args.policy, false) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let tests_dir = loaded.config.policy.dir.join("tests");
    let (suites, broken) = read_suites(&tests_dir);
    let now = SystemTime::now();
    let mut results: Vec<CaseResult> = Vec::new();
    for file in &suites {
        results.extend(run_suite(
            &file.name,
            &file.suite,
            &loaded.policies,
            &loaded.settings,
            &|path| file.read(path),
            now,
        ));
    }
    for result in results.iter().filter(|result| !result.passed()) {
        println!("FAIL {} › {}", result.suite, result.name);
        for failure in &result.failures {
            println!("    {failure}");
        }
    }
    let passed = results.iter().filter(|result| result.passed()).count();
    let failed = results.len() - passed;
    if let Some(path) = &args.junit
        && let Err(error) = fs::write(path, junit_xml(&results))
    {
        eprintln!("clientgate: cannot write `{}`: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{passed} passed, {failed} failed");
    if results.is_empty() && broken == 0 {
        eprintln!(
            "clientgate: no test cases in {}/*.toml",
            tests_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if failed > 0 || broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One parsed suite file.
struct SuiteFile {
    name: String,
    suite: Suite,
    /// Where the files it names (`document_file`) are.
    base: PathBuf,
}

impl SuiteFile {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        fs::read(self.base.join(path))
            .map_err(|error| format!("cannot read `{}`: {error}", path.display()))
    }
}

/// The suites in `dir`, sorted by name, and how many files could not be read or parsed
/// (each reported on standard error).
fn read_suites(dir: &Path) -> (Vec<SuiteFile>, usize) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut suites = Vec::new();
    let mut broken = 0;
    for file in files {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        match fs::read_to_string(&file)
            .map_err(|error| error.to_string())
            .and_then(|text| parse_suite(&text))
        {
            Ok(suite) => {
                let base = file.parent().unwrap_or(Path::new(".")).to_owned();
                suites.push(SuiteFile { name, suite, base });
            }
            Err(error) => {
                eprintln!("error: {}: {error}", file.display());
                broken += 1;
            }
        }
    }
    (suites, broken)
}

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
