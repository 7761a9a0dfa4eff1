//! Policy test suites: TOML files of named cases in `policies/tests/`, each a registration,
//! its caller and stubbed signals, and the outcome expected. Parsing and running are pure;
//! the command line reads the files and prints.
//!
//! ```toml
//! [[case]]
//! name = "a flood of registrations from one IP address is denied"
//! ip = "203.0.113.7"                                  # optional
//! tenant = "default"                                  # optional
//! dcr = { client_name = "Flood", redirect_uris = ["https://app.example.com/cb"] }
//! rates = { ip = { "1h" = 20 } }                      # optional stubs
//! duplicates = 0
//! completed_challenges = []                           # e.g. ["admin_approval"]
//! software_statement_issuer = "https://issuer.example" # as if verified
//! document_changed = ["redirect_uris"]                # CIMD: as if the document changed
//! expect = { decision = "deny", reasons = ["deny_registration_floods_per_ip"], error = "invalid_client_metadata" }
//! ```
//!
//! A registration is one of `dcr` (a table), `dcr_json` (the exact body, for malformed
//! ones) or `cimd` (a client_id URL) with `document` (a table), `document_json` or
//! `document_file` (relative to the suite file), and optionally `redirect_uri`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use super::offline::{OfflineCase, OfflineRegistration, Stubs, decide_offline};
use crate::engine::{EngineSettings, Evaluated};
use crate::policy::PolicyBundle;
use crate::vocab::Caller;
use crate::vocab::Decision;

/// A parsed suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub ip: Option<std::net::IpAddr>,
    #[serde(default)]
    pub user_agent: String,
    pub dcr: Option<serde_json::Value>,
    pub dcr_json: Option<String>,
    #[serde(default)]
    pub initial_access_token: bool,
    pub cimd: Option<String>,
    #[serde(default)]
    pub redirect_uri: String,
    pub document: Option<serde_json::Value>,
    pub document_json: Option<String>,
    pub document_file: Option<String>,
    #[serde(default)]
    pub rates: BTreeMap<String, BTreeMap<String, u64>>,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub completed_challenges: Vec<String>,
    /// Stubs a verified software statement from this issuer.
    pub software_statement_issuer: Option<String>,
    /// CIMD: the members in which the document differs from the one cached before it.
    #[serde(default)]
    pub document_changed: Vec<String>,
    pub expect: Expect,
}

/// What the case must decide. Lists are compared as sets; a list left out is not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub decision: Decision,
    /// The deciding policies' ids, exactly.
    pub reasons: Option<Vec<String>>,
    /// The obligations of an APPROVE, exactly.
    pub obligations: Option<Vec<String>>,
    /// The OAuth error of a DENY.
    pub error: Option<String>,
    /// The step-up challenges, exactly.
    pub challenges: Option<Vec<String>>,
    /// Finding codes that must be among the findings.
    pub findings: Option<Vec<String>>,
}

fn default_tenant() -> String {
    "default".to_owned()
}

/// The result of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub suite: String,
    pub name: String,
    /// Empty when the case passed; else one line per difference.
    pub failures: Vec<String>,
    pub micros: u64,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Why a suite file or one of its cases cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("give exactly one of `dcr`, `dcr_json`, `cimd`")]
    Registration,
    #[error("a `cimd` case needs exactly one of `document`, `document_json`, `document_file`")]
    Document,
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a file a suite names (`document_file`), relative to the suite.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Parses a suite file.
pub fn parse_suite(text: &str) -> Result<Suite, SuiteError> {
    Ok(toml::from_str(text)?)
}

/// Runs every case of `suite` (named `suite_name`); `read_file` reads `document_file`s.
pub fn run_suite(
    suite_name: &str,
    suite: &Suite,
    policies: &PolicyBundle,
    settings: &EngineSettings,
    read_file: ReadFile<'_>,
    now: SystemTime,
) -> Vec<CaseResult> {
    suite
        .cases
        .iter()
        .map(|case| {
            let started = std::time::Instant::now();
            let failures = match offline_case(case, read_file) {
                Err(problem) => vec![format!("the case is malformed: {problem}")],
                Ok(offline) => match decide_offline(policies, settings, &offline, now) {
                    Err(problem) => vec![format!("the case is malformed: {problem}")],
                    Ok(evaluated) => compare(&case.expect, &evaluated),
                },
            };
            CaseResult {
                suite: suite_name.to_owned(),
                name: case.name.clone(),
                failures,
                micros: started.elapsed().as_micros() as u64,
            }
        })
        .collect()
}

/// The registration, caller and stubs of `case`, as the offline pipeline takes them.
pub fn offline_case(case: &Case, read_file: ReadFile<'_>) -> Result<OfflineCase, SuiteError> {
    let registration = match (&case.dcr, &case.dcr_json, &case.cimd) {
        (Some(metadata), None, None) => OfflineRegistration::Dcr {
            metadata_json: metadata.to_string(),
            initial_access_token: case.initial_access_token,
        },
        (None, Some(json), None) => OfflineRegistration::Dcr {
            metadata_json: json.clone(),
            initial_access_token: case.initial_access_token,
        },
        (None, None, Some(client_id)) => {
            let document = match (&case.document, &case.document_json, &case.document_file) {
                (Some(document), None, None) => document.to_string().into_bytes(),
                (None, Some(json), None) => json.clone().into_bytes(),
                (None, None, Some(file)) => {
                    read_file(Path::new(file)).map_err(|source| SuiteError::Read {
                        path: file.clone(),
                        source,
                    })?
                }
                _ => return Err(SuiteError::Document),
            };
            OfflineRegistration::Cimd {
                client_id: client_id.clone(),
                redirect_uri: case.redirect_uri.clone(),
                document: Ok(document),
            }
        }
        _ => return Err(SuiteError::Registration),
    };
    Ok(OfflineCase {
        tenant: case.tenant.clone(),
        caller: Caller {
            ip: case.ip,
            user_agent: case.user_agent.clone(),
            user_authenticated: false,
        },
        registration,
        stubs: Stubs {
            rates: case.rates.clone(),
            duplicates: case.duplicates,
            duplicate_first_seen_ms: None,
            completed_challenges: case.completed_challenges.clone(),
            software_statement_issuer: case.software_statement_issuer.clone(),
            document_changed: case.document_changed.clone(),
        },
        explain: false,
    })
}

/// One line per difference between what was expected and what was decided.
fn compare(expect: &Expect, got: &Evaluated) -> Vec<String> {
    let mut failures = Vec::new();
    let reasons: Vec<String> = got.reasons.iter().map(|r| r.policy_id.clone()).collect();
    if expect.decision != got.decision {
        failures.push(format!(
            "decision: expected {}, got {} (reasons: {}{})",
            expect.decision.as_str(),
            got.decision.as_str(),
            list(&reasons),
            first_error(got),
        ));
    }
    let mut same = |what: &str, expected: &Option<Vec<String>>, got: &[String]| {
        if let Some(expected) = expected {
            let mut want = expected.clone();
            let mut have = got.to_vec();
            want.sort();
            have.sort();
            if want != have {
                failures.push(format!(
                    "{what}: expected [{}], got [{}]",
                    want.join(", "),
                    have.join(", ")
                ));
            }
        }
    };
    same("reasons", &expect.reasons, &reasons);
    same("obligations", &expect.obligations, &got.obligations);
    let challenges = got
        .step_up
        .as_ref()
        .map(|step_up| step_up.challenges.clone())
        .unwrap_or_default();
    same("challenges", &expect.challenges, &challenges);
    if let Some(expected) = &expect.error {
        let error = got.error.as_ref().map(|(code, _)| code.as_str());
        if error != Some(expected.as_str()) {
            failures.push(format!(
                "error: expected {expected}, got {}",
                error.unwrap_or("none")
            ));
        }
    }
    if let Some(expected) = &expect.findings {
        let codes: Vec<&str> = got.findings.iter().map(|f| f.code.as_str()).collect();
        for code in expected {
            if !codes.contains(&code.as_str()) {
                failures.push(format!(
                    "findings: expected `{code}` among [{}]",
                    codes.join(", ")
                ));
            }
        }
    }
    failures
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn first_error(got: &Evaluated) -> String {
    got.findings
        .iter()
        .find(|finding| finding.is_error())
        .map(|finding| format!("; finding {}: {}", finding.code.as_str(), finding.message))
        .unwrap_or_default()
}

/// JUnit XML for CI systems: one `testsuite` per file.
pub fn junit_xml(results: &[CaseResult]) -> String {
    let mut suites: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for result in results {
        suites.entry(&result.suite).or_default().push(result);
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"clientgate policy tests\" \
         tests=\"{}\" failures=\"{failed}\">\n",
        results.len()
    );
    for (suite, cases) in suites {
        let failures = cases.iter().filter(|c| !c.passed()).count();
        let seconds: f64 = cases.iter().map(|c| c.micros as f64 / 1e6).sum();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{seconds:.6}\">\n",
            escape(suite),
            cases.len()
        ));
        for case in cases {
            xml.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\"",
                escape(&case.name),
                escape(suite),
                case.micros as f64 / 1e6
            ));
            if case.passed() {
                xml.push_str("/>\n");
            } else {
                xml.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    escape(&case.failures[0]),
                    escape(&case.failures.join("\n"))
                ));
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
