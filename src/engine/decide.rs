//! The pure part of the pipeline: a validated registration and the clock in, a decision
//! out. No I/O: CIMD documents arrive already resolved.

use std::time::SystemTime;

use super::{ADMIN_APPROVAL, EngineSettings, EvaluateInput, Evaluated, PresentedTicket};
use crate::cimd::redirect_match::match_redirect_uri;
use crate::cimd::source::{CimdInfo, Resolution};
use crate::errors;
use crate::fingerprint::fingerprint;
use crate::policy::{PolicyBundle, PolicyOutcome};
use crate::registration::software_statement::{StatementCheck, verify};
use crate::registration::uri::registrable_domain;
use crate::registration::{Code, Finding, Severity, Validation, validate_dcr};
use crate::signals::{RequestFacts, derive_signals};
use crate::store::{
    FingerprintStats, RateDimension, RateKey, StepUpRef, StepUpTicket, TicketState,
};
use crate::vocab::Decision;
use crate::vocab::RegistrationType;

/// A registration validated and identified, ready for its observations and a decision.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub validation: Validation,
    pub registration_type: RegistrationType,
    /// The CIMD client_id; `None` for DCR.
    pub client_id: Option<String>,
    pub initial_access_token: bool,
    pub cimd: Option<CimdInfo>,
    pub fingerprint: String,
    /// The issuer of a verified software statement.
    pub software_statement_issuer: Option<String>,
}

impl Prepared {
    fn new(
        validation: Validation,
        registration_type: RegistrationType,
        client_id: Option<String>,
        initial_access_token: bool,
        cimd: Option<CimdInfo>,
    ) -> Prepared {
        let fingerprint = fingerprint(
            registration_type,
            client_id.as_deref(),
            &validation.metadata,
        );
        Prepared {
            validation,
            registration_type,
            client_id,
            initial_access_token,
            cimd,
            fingerprint,
            software_statement_issuer: None,
        }
    }

    /// The rate counters this registration reads and, when recorded, adds to: the caller's
    /// IP, the registrable domain of the client_id (CIMD) or `client_uri` (DCR), the tenant,
    /// and the fingerprint.
    pub fn rate_keys(&self, input: &EvaluateInput) -> Vec<RateKey> {
        let domain = match &self.client_id {
            Some(client_id) => host_domain(client_id),
            None => self
                .validation
                .metadata
                .client_uri
                .as_deref()
                .and_then(host_domain),
        };
        [
            (RateDimension::Ip, input.caller.ip.map(|ip| ip.to_string())),
            (RateDimension::Domain, domain),
            (RateDimension::Tenant, Some(input.tenant.clone())),
            (RateDimension::Fingerprint, Some(self.fingerprint.clone())),
        ]
        .into_iter()
        .filter_map(|(dimension, value)| {
            Some(RateKey {
                dimension,
                value: value?,
            })
        })
        .collect()
    }
}

fn host_domain(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    registrable_domain(url.host_str()?)
}

/// What the store knows that bears on a decision: the ticket presented, the rate counts,
/// and earlier approvals of the same registration.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub ticket: Option<PresentedTicket>,
    /// For each dimension, the count in each configured window.
    pub rates: Vec<(RateDimension, Vec<u64>)>,
    pub duplicates: Option<FingerprintStats>,
}

/// Validates a DCR registration (the body `metadata_json`), verifying its software
/// statement: a trusted statement's claims override the plain members (rule 82, E14).
pub fn prepare_dcr(
    settings: &EngineSettings,
    metadata_json: &str,
    initial_access_token: bool,
    now: SystemTime,
) -> Prepared {
    let mut validation = validate_dcr(metadata_json, settings.profile);
    let statement = validation.metadata.software_statement.clone().filter(|_| {
        !validation
            .findings
            .iter()
            .any(|f| f.field == "software_statement")
    });
    let mut issuer = None;
    if let Some(statement) = statement {
        let now_secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (code, message) = match verify(&statement, &settings.trusted_issuers, now_secs) {
            StatementCheck::Verified {
                issuer: verified,
                claims,
            } => {
                validation = validate_dcr(&overlay(metadata_json, claims), settings.profile);
                issuer = Some(verified);
                (None, String::new())
            }
            StatementCheck::Untrusted(message) => {
                (Some(Code::SoftwareStatementUnapproved), message)
            }
            StatementCheck::Invalid(message) => (Some(Code::SoftwareStatementInvalid), message),
        };
        if let Some(code) = code {
            validation.findings.push(Finding {
                code,
                severity: Severity::Error,
                field: "software_statement".to_owned(),
                message,
            });
        }
    }
    let mut prepared = Prepared::new(
        validation,
        RegistrationType::Dcr,
        None,
        initial_access_token,
        None,
    );
    prepared.software_statement_issuer = issuer;
    prepared
}

/// The request body with the statement's claims laid over it; JWT bookkeeping claims are
/// not client metadata and are left out.
fn overlay(metadata_json: &str, claims: serde_json::Map<String, serde_json::Value>) -> String {
    const NOT_METADATA: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];
    let mut object = match serde_json::from_str::<serde_json::Value>(metadata_json) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    for (name, value) in claims {
        if !NOT_METADATA.contains(&name.as_str()) {
            object.insert(name, value);
        }
    }
    serde_json::Value::Object(object).to_string()
}

/// Decides one DCR registration without recording it, with nothing observed but `ticket`.
pub fn decide_dcr(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    metadata_json: &str,
    initial_access_token: bool,
    ticket: Option<PresentedTicket>,
    now: SystemTime,
) -> Evaluated {
    let prepared = prepare_dcr(settings, metadata_json, initial_access_token, now);
    let observed = Observed {
        ticket,
        ..Observed::default()
    };
    decide(policies, settings, input, prepared, observed, now)
}

/// What the edges found out about a CIMD client before deciding.
#[derive(Clone, Debug)]
pub struct CimdLookup {
    pub client_id: String,
    /// The authorization request's redirect_uri; empty when there is none.
    pub redirect_uri: String,
    /// Findings of the client_id URL checks.
    pub client_id_findings: Vec<Finding>,
    /// The resolved document; `None` when the URL checks refused the client_id, so nothing
    /// was fetched.
    pub resolution: Option<Resolution>,
}

/// Turns a CIMD lookup into a prepared registration: the document's validation, or the
/// findings of why there is no usable document, and the redirect_uri match (D1–D14).
pub fn prepare_cimd(lookup: CimdLookup) -> Prepared {
    let CimdLookup {
        client_id,
        redirect_uri,
        client_id_findings,
        resolution,
    } = lookup;
    let refused = |findings: Vec<Finding>| {
        let validation = Validation {
            findings,
            ..Validation::default()
        };
        Prepared::new(
            validation,
            RegistrationType::Cimd,
            Some(client_id.clone()),
            false,
            None,
        )
    };
    let (mut validation, info) = match resolution {
        None => return refused(client_id_findings),
        Some(Resolution::Failed(failure)) => {
            let mut findings = client_id_findings;
            findings.push(Finding {
                code: failure.code,
                severity: Severity::Error,
                field: "client_id".to_owned(),
                message: failure.message,
            });
            return refused(findings);
        }
        Some(Resolution::Invalid { mut validation }) => {
            validation.findings.splice(0..0, client_id_findings);
            return Prepared::new(
                validation,
                RegistrationType::Cimd,
                Some(client_id),
                false,
                None,
            );
        }
        Some(Resolution::Valid { validation, info }) => (validation, info),
    };
    validation.findings.splice(0..0, client_id_findings);
    if !redirect_uri.is_empty()
        && let Err(refusal) = match_redirect_uri(&validation.metadata.redirect_uris, &redirect_uri)
    {
        validation.findings.push(Finding {
            code: refusal.code,
            severity: Severity::Error,
            field: "redirect_uri".to_owned(),
            message: refusal.message,
        });
    }
    Prepared::new(
        validation,
        RegistrationType::Cimd,
        Some(client_id),
        false,
        Some(info),
    )
}

/// Outcome rule 1, then the policies.
pub fn decide(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    prepared: Prepared,
    observed: Observed,
    now: SystemTime,
) -> Evaluated {
    let keys = prepared.rate_keys(input);
    let Prepared {
        validation,
        registration_type,
        client_id,
        initial_access_token,
        cimd,
        fingerprint: print,
        software_statement_issuer,
    } = prepared;
    let mut findings = validation.findings.clone();
    let mut completed = accepted_challenges(input, settings, &mut findings);
    let pending_ticket = redeem_ticket(
        observed.ticket.as_ref(),
        &input.tenant,
        &print,
        &mut completed,
        &mut findings,
    );
    let mut evaluated = Evaluated {
        decision_id: None,
        decision: Decision::Deny,
        reasons: Vec::new(),
        findings: Vec::new(),
        error: None,
        step_up: None,
        obligations: Vec::new(),
        client_metadata_json: validation.metadata.to_json(),
        policy_version: policies.version.clone(),
        fingerprint: print.clone(),
        explain_json: None,
        registration_type,
        client_id: client_id.clone(),
        client_name: validation.metadata.client_name.clone(),
        software_id: validation.metadata.software_id.clone(),
        cimd: cimd.clone(),
        new_ticket: false,
        duplicate_of: observed
            .duplicates
            .as_ref()
            .map(|stats| stats.first_decision_id.clone()),
    };
    if findings.iter().any(Finding::is_error) {
        let code = errors::error_for_findings(&findings, registration_type);
        evaluated.error = Some((code, describe_findings(&findings)));
        evaluated.findings = findings;
        if input.explain {
            evaluated.explain_json = Some(
                r#"{"policies_ran":false,"why":"spec errors deny before any policy runs"}"#
                    .to_owned(),
            );
        }
        return evaluated;
    }
    // Every dimension the registration has a key for appears, counted or not.
    let zeros = vec![0; settings.rate_windows.len()];
    let rates = keys
        .iter()
        .map(|key| {
            let counts = observed
                .rates
                .iter()
                .find(|(dimension, _)| *dimension == key.dimension)
                .map_or(&zeros, |(_, counts)| counts);
            (key.dimension, counts)
        })
        .map(|(dimension, counts)| {
            let windows = settings
                .rate_windows
                .iter()
                .map(|window| window_name(*window))
                .zip(counts.iter().copied())
                .collect();
            (dimension.as_str().to_owned(), windows)
        })
        .collect();
    let signals = derive_signals(
        &validation,
        RequestFacts {
            tenant: input.tenant.clone(),
            registration_type,
            client_id,
            caller: input.caller.clone(),
            initial_access_token,
            completed_challenges: completed,
            cimd_cache: cimd.map(|info| info.cache.as_str().to_owned()),
            software_statement_issuer,
            rates,
            duplicates: observed
                .duplicates
                .as_ref()
                .map_or(0, |stats| stats.approved),
            duplicate_first_seen: observed.duplicates.as_ref().map(|stats| {
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(stats.first_seen_ms)
            }),
            now,
        },
    );
    let outcome = policies.decide(&signals, &print, input.explain);
    apply_outcome(&mut evaluated, outcome, settings, now);
    if let (Some(step_up), Some(ticket)) = (evaluated.step_up.as_mut(), pending_ticket) {
        // Still pending: keep pointing at the ticket the operator is reviewing.
        step_up.ticket_id = ticket.ticket_id;
        step_up.expires_at_ms = ticket.expires_at_ms;
        evaluated.new_ticket = false;
    }
    findings.extend(std::mem::take(&mut evaluated.findings));
    evaluated.findings = findings;
    evaluated
}

/// Checks that decisions under `settings` build a context the policies' schema accepts:
/// every rate dimension present, with the configured windows (`rates.windows_secs`), which
/// the schema's `RateWindows` must name. Run when a policy set is loaded.
pub fn check_context(policies: &PolicyBundle, settings: &EngineSettings) -> Result<(), String> {
    let windows: Vec<(String, u64)> = settings
        .rate_windows
        .iter()
        .map(|window| (window_name(*window), 0))
        .collect();
    let signals = derive_signals(
        &Validation::default(),
        RequestFacts {
            tenant: "default".to_owned(),
            registration_type: RegistrationType::Dcr,
            client_id: None,
            caller: crate::vocab::Caller {
                ip: Some(std::net::IpAddr::from([192, 0, 2, 1])),
                ..Default::default()
            },
            initial_access_token: false,
            completed_challenges: Vec::new(),
            cimd_cache: Some("hit".to_owned()),
            software_statement_issuer: None,
            rates: RateDimension::ALL
                .iter()
                .map(|dimension| (dimension.as_str().to_owned(), windows.clone()))
                .collect(),
            duplicates: 0,
            duplicate_first_seen: Some(std::time::UNIX_EPOCH),
            now: std::time::UNIX_EPOCH,
        },
    );
    policies.check_context_shape(&signals).map_err(|error| {
        format!(
            "the decision context does not fit the schema ({error}); the rate windows \
             configured (`rates.windows_secs`: {}) must be the members of the schema's `RateWindows`",
            windows
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// A window's name in the Cedar context: `1m`, `1h`, `24h`, `90s`…
pub fn window_name(window: std::time::Duration) -> String {
    let secs = window.as_secs();
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn apply_outcome(
    evaluated: &mut Evaluated,
    outcome: PolicyOutcome,
    settings: &EngineSettings,
    now: SystemTime,
) {
    evaluated.decision = outcome.decision;
    evaluated.explain_json = outcome.explain.map(|json| json.to_string());
    match outcome.decision {
        Decision::Approve => evaluated.obligations = outcome.obligations,
        Decision::StepUp => {
            evaluated.new_ticket = true;
            evaluated.step_up = Some(StepUpRef {
                ticket_id: ulid::Ulid::from_datetime(now).to_string(),
                challenges: outcome.challenges,
                expires_at_ms: crate::vocab::millis(now + settings.step_up_ttl),
            });
        }
        Decision::Deny => {
            let code = outcome
                .error
                .unwrap_or_else(|| errors::error_for_policy_deny(evaluated.registration_type));
            let description = outcome
                .reasons
                .iter()
                .map(|reason| reason.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            evaluated.error = Some((code, description));
        }
    }
    evaluated.reasons = outcome.reasons;
    evaluated.findings = outcome.findings;
}

/// Challenges the AS says were completed, kept only when the configuration lets the AS
/// attest them; `admin_approval` never is.
/// What a presented step-up ticket contributes: its challenges when approved for this very
/// registration; a finding that denies when it is unknown, bound to another registration,
/// denied or expired; the ticket to keep using while it is pending.
fn redeem_ticket(
    ticket: Option<&PresentedTicket>,
    tenant: &str,
    fingerprint: &str,
    completed: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> Option<StepUpTicket> {
    let deny = |code: Code, message: String| Finding {
        code,
        severity: Severity::Error,
        field: "step_up.ticket_id".to_owned(),
        message,
    };
    match ticket? {
        PresentedTicket::Unknown(ticket_id) => {
            findings.push(deny(
                Code::StepUpTicketUnknown,
                format!("there is no step-up ticket `{ticket_id}`"),
            ));
            None
        }
        PresentedTicket::Found(ticket)
            if ticket.fingerprint != fingerprint || ticket.tenant != tenant =>
        {
            findings.push(deny(
                Code::StepUpTicketMismatch,
                format!(
                    "step-up ticket `{}` was issued for another registration; it cannot approve this one",
                    ticket.ticket_id
                ),
            ));
            None
        }
        PresentedTicket::Found(ticket) => match ticket.state {
            TicketState::Approved => {
                completed.extend(ticket.challenges.iter().cloned());
                None
            }
            TicketState::Pending => Some((**ticket).clone()),
            TicketState::Denied => {
                let note = if ticket.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", ticket.note)
                };
                findings.push(deny(
                    Code::StepUpDenied,
                    format!("an operator denied this registration{note}"),
                ));
                None
            }
            TicketState::Expired => {
                findings.push(deny(
                    Code::StepUpTicketExpired,
                    format!(
                        "step-up ticket `{}` expired before it was approved",
                        ticket.ticket_id
                    ),
                ));
                None
            }
        },
    }
}

fn accepted_challenges(
    input: &EvaluateInput,
    settings: &EngineSettings,
    findings: &mut Vec<Finding>,
) -> Vec<String> {
    let mut accepted = Vec::new();
    for challenge in &input.completed_challenges {
        if challenge != ADMIN_APPROVAL && settings.attested_challenges.contains(challenge) {
            accepted.push(challenge.clone());
        } else {
            findings.push(Finding {
                code: Code::ChallengeNotAttestable,
                severity: Severity::Warning,
                field: "step_up.completed_challenges".to_owned(),
                message: format!(
                    "challenge `{challenge}` cannot be attested by the authorization server; ignored"
                ),
            });
        }
    }
    accepted
}

/// The error description of a spec deny: the first error, and how many more there are.
fn describe_findings(findings: &[Finding]) -> String {
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.is_error()).collect();
    match errors.as_slice() {
        [] => "the registration was refused".to_owned(),
        [only] => only.message.clone(),
        [first, rest @ ..] => format!("{} (and {} more)", first.message, rest.len()),
    }
}
