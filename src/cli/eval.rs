//! `clientgate eval`: decide one registration offline, with no server and no store, and
//! print the decision. The exit status is the decision (see [`exit_status`]), so scripts
//! can branch on it.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use super::policies::{PolicyArgs, load};
use crate::authoring::offline::{OfflineCase, OfflineRegistration, Stubs, decide_offline};
use crate::cimd::fetch::{FetchFailure, Fetched, Fetcher, FetcherError, Validators};
use crate::config::Config;
use crate::engine::Evaluated;
use crate::vocab::{Caller, Decision};

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
            exit_status(evaluated.decision)
        }
        Err(error) => {
            eprintln!("clientgate: {error}");
            ExitCode::from(2)
        }
    }
}

/// The exit status of a decision, so that a script can branch on it: 0 APPROVE, 3 DENY,
/// 4 STEP_UP (1 and 2 stay failure and bad usage, as for every command).
pub fn exit_status(decision: Decision) -> ExitCode {
    match decision {
        Decision::Approve => ExitCode::SUCCESS,
        Decision::Deny => ExitCode::from(3),
        Decision::StepUp => ExitCode::from(4),
    }
}

/// Why `eval` could not gather the registration it was asked to decide.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot read `{path}`: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Fetcher(#[from] FetcherError),
}

fn registration(args: &EvalArgs, config: &Config) -> Result<OfflineRegistration, InputError> {
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

fn read_text(path: &Path) -> Result<String, InputError> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(InputError::Stdin)?;
        return Ok(text);
    }
    fs::read_to_string(path).map_err(|source| InputError::File {
        path: path.display().to_string(),
        source,
    })
}

/// Fetches a CIMD document with the service's guarded fetcher. A URL the client_id rules
/// refuse is not fetched (the decision says why); a failed fetch becomes its finding.
fn fetch(client_id: &str, config: &Config) -> Result<Result<Vec<u8>, FetchFailure>, InputError> {
    let check = crate::cimd::client_id::check_client_id(
        client_id,
        config.validation.profile,
        &config.cimd.addresses(),
    );
    let Some(url) = check.url else {
        return Ok(Ok(Vec::new()));
    };
    let runtime = tokio::runtime::Runtime::new().map_err(InputError::Runtime)?;
    runtime.block_on(async {
        let fetcher = Fetcher::new(crate::app::fetch_settings(config))?;
        Ok(match fetcher.fetch(&url, &Validators::default()).await {
            Ok(Fetched::Document { body, .. }) => Ok(body),
            Ok(Fetched::NotModified { .. }) => Ok(Vec::new()),
            Err(failure) => Err(failure),
        })
    })
}

fn decision_name(evaluated: &Evaluated) -> &'static str {
    match evaluated.decision {
        Decision::Approve => "APPROVE",
        Decision::Deny => "DENY",
        Decision::StepUp => "STEP_UP",
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
