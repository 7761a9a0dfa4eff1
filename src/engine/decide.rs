//! The pure part of the pipeline: a validated registration and the clock in, a decision
//! out. No I/O: CIMD documents arrive already resolved.

use std::time::SystemTime;

use super::{ADMIN_APPROVAL, EngineSettings, EvaluateInput, Evaluated, PresentedTicket};
use crate::cimd::redirect_match::match_redirect_uri;
use crate::cimd::source::{CimdInfo, Resolution};
use crate::errors;
use crate::fingerprint::fingerprint;
use crate::policy::{Decision, PolicyBundle, PolicyOutcome};
use crate::registration::{Code, Finding, Severity, Validation, validate_dcr};
use crate::signals::{RegistrationType, RequestFacts, derive_signals};
use crate::store::{StepUpRef, StepUpTicket, TicketState};

/// Decides one DCR registration (the body `metadata_json`) without recording it.
pub fn decide_dcr(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    metadata_json: &str,
    initial_access_token: bool,
    ticket: Option<PresentedTicket>,
    now: SystemTime,
) -> Evaluated {
    let validation = validate_dcr(metadata_json, settings.profile);
    let registration = Registered {
        registration_type: RegistrationType::Dcr,
        client_id: None,
        initial_access_token,
        cimd: None,
        ticket,
    };
    decide_validated(policies, settings, input, validation, registration, now)
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
    /// The step-up ticket the call presented, as the store has it.
    pub ticket: Option<PresentedTicket>,
}

/// Decides one CIMD client.
pub fn decide_cimd(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    lookup: CimdLookup,
    now: SystemTime,
) -> Evaluated {
    let CimdLookup {
        client_id,
        redirect_uri,
        client_id_findings,
        resolution,
        ticket,
    } = lookup;
    let registration = Registered {
        registration_type: RegistrationType::Cimd,
        client_id: Some(client_id),
        initial_access_token: false,
        cimd: None,
        ticket,
    };
    let refused = |findings: Vec<Finding>| {
        let validation = Validation {
            findings,
            ..Validation::default()
        };
        decide_validated(
            policies,
            settings,
            input,
            validation,
            registration.clone(),
            now,
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
            return decide_validated(policies, settings, input, validation, registration, now);
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
    let registration = Registered {
        cimd: Some(info),
        ..registration
    };
    decide_validated(policies, settings, input, validation, registration, now)
}

/// What kind of registration a validation came from.
#[derive(Clone, Debug)]
struct Registered {
    registration_type: RegistrationType,
    client_id: Option<String>,
    initial_access_token: bool,
    cimd: Option<CimdInfo>,
    ticket: Option<PresentedTicket>,
}

/// Outcome rule 1, then the policies.
fn decide_validated(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    validation: Validation,
    registration: Registered,
    now: SystemTime,
) -> Evaluated {
    let mut findings = validation.findings.clone();
    let mut completed = accepted_challenges(input, settings, &mut findings);
    let client_id = registration.client_id.as_deref();
    let print = fingerprint(
        registration.registration_type,
        client_id,
        &validation.metadata,
    );
    let pending_ticket = redeem_ticket(
        registration.ticket.as_ref(),
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
        registration_type: registration.registration_type,
        client_id: registration.client_id.clone(),
        client_name: validation.metadata.client_name.clone(),
        software_id: validation.metadata.software_id.clone(),
        cimd: registration.cimd.clone(),
        new_ticket: false,
    };
    if findings.iter().any(Finding::is_error) {
        let code = errors::error_for_findings(&findings, registration.registration_type);
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
    let signals = derive_signals(
        &validation,
        RequestFacts {
            tenant: input.tenant.clone(),
            registration_type: registration.registration_type,
            client_id: registration.client_id,
            caller: input.caller.clone(),
            initial_access_token: registration.initial_access_token,
            completed_challenges: completed,
            cimd_cache: registration.cimd.map(|info| info.cache.as_str().to_owned()),
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
                expires_at_ms: super::millis(now + settings.step_up_ttl),
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
