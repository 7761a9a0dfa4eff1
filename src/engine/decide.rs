//! The pure part of the pipeline: a prepared registration, what the store observed, the
//! clock and the ids the edge minted in; the answer and what recording it writes out. No
//! I/O, no clock, no randomness: CIMD documents arrive already resolved, ids arrive minted.

use std::time::SystemTime;

use super::prepare::{Prepared, prepare_dcr};
use super::{EngineSettings, EvaluateInput, Evaluated};
use crate::errors;
use crate::policy::{PolicyBundle, PolicyOutcome};
use crate::registration::findings::bounded;
use crate::registration::{Finding, Validation};
use crate::signals::{RequestFacts, derive_signals};
use crate::step_up::{self, NewTicket, PresentedTicket, StepUpTicket};
use crate::store::{FingerprintStats, RateDimension, RateKey};
use crate::vocab::{Caller, Decision, RegistrationType, from_millis, millis};

/// What the store knows that bears on a decision: the ticket presented, the counts of
/// every rate counter the registration reads (one count per configured window), and
/// earlier approvals of the same registration.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub ticket: Option<PresentedTicket>,
    pub rates: Vec<(RateKey, Vec<u64>)>,
    pub duplicates: Option<FingerprintStats>,
}

/// The clock and the ids a decision is made with, minted by the edge (the engine mints
/// fresh ULIDs; offline decisions use placeholders) so that deciding stays pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub now: SystemTime,
    /// The id the decision is recorded under.
    pub decision_id: String,
    /// The id a ticket opened by this decision takes.
    pub ticket_id: String,
}

/// What deciding one registration gives: the answer, and the draft of what recording it
/// writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub answer: Evaluated,
    pub draft: DecisionDraft,
}

/// What the decision record holds beyond the answer, and the ticket the decision opens.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionDraft {
    pub registration_type: RegistrationType,
    /// The CIMD client_id; `None` for DCR.
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub software_id: Option<String>,
    /// A STEP_UP that does not keep a presented pending ticket opens this one.
    pub opens: Option<StepUpTicket>,
    /// An APPROVE given by an approved ticket redeems one of its uses; the store records
    /// it with the decision, or refuses when none is left.
    pub redeems: Option<String>,
}

/// Decides one DCR registration without recording it, with nothing observed but `ticket`:
/// every rate counter at zero, no earlier approvals.
pub fn decide_dcr(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    metadata_json: &str,
    initial_access_token: bool,
    ticket: Option<PresentedTicket>,
    now: SystemTime,
) -> Evaluated {
    let mut prepared = prepare_dcr(settings, metadata_json, initial_access_token, now);
    prepared.recognize(policies.registry());
    prepared.hold_to(policies.capabilities(&input.tenant), settings.profile);
    let zeros = vec![0; settings.rate_windows.len()];
    let observed = Observed {
        ticket,
        rates: prepared
            .rate_keys(input)
            .into_iter()
            .map(|key| (key, zeros.clone()))
            .collect(),
        duplicates: None,
    };
    decide(
        policies,
        settings,
        input,
        &prepared,
        &observed,
        &Stamp::offline(now),
    )
    .answer
}

impl Stamp {
    /// Placeholder ids for a decision that is never recorded.
    pub fn offline(now: SystemTime) -> Stamp {
        Stamp {
            now,
            decision_id: "(offline)".to_owned(),
            ticket_id: "(offline)".to_owned(),
        }
    }
}

/// Outcome rule 1 (spec errors deny before any policy runs), then the policies.
pub fn decide(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    prepared: &Prepared,
    observed: &Observed,
    stamp: &Stamp,
) -> Decided {
    let metadata = &prepared.validation.metadata;
    let mut findings = prepared.validation.findings.clone();
    let (mut completed, warnings) =
        step_up::accept_attested(&input.completed_challenges, &settings.attested_challenges);
    findings.extend(warnings);
    let binding = prepared.binding();
    let redemption = step_up::redeem(
        observed.ticket.as_ref(),
        &input.tenant,
        &prepared.fingerprint,
        &binding,
    );
    completed.extend(redemption.completed);
    findings.extend(redemption.refusal);
    let mut answer = Evaluated {
        decision_id: None,
        decision: Decision::Deny,
        reasons: Vec::new(),
        findings: Vec::new(),
        error: None,
        step_up: None,
        obligations: Vec::new(),
        client_metadata_json: binding.client_metadata_json.clone(),
        policy_version: policies.version.clone(),
        fingerprint: prepared.fingerprint.clone(),
        explain_json: None,
        cimd: prepared.cimd.clone(),
        duplicate_of: observed
            .duplicates
            .as_ref()
            .map(|stats| stats.first_decision_id.clone()),
    };
    let mut draft = DecisionDraft {
        registration_type: prepared.registration_type,
        client_id: prepared.client_id.clone(),
        client_name: metadata.client_name.clone(),
        software_id: metadata.software_id.clone(),
        opens: None,
        redeems: None,
    };
    if findings.iter().any(Finding::is_error) {
        let findings = bounded(findings);
        let code = errors::error_for_findings(&findings, prepared.registration_type);
        answer.error = Some((code, describe_findings(&findings)));
        answer.findings = findings;
        if input.explain {
            answer.explain_json = Some(
                r#"{"policies_ran":false,"why":"spec errors deny before any policy runs"}"#
                    .to_owned(),
            );
        }
        return Decided { answer, draft };
    }
    let rates = observed
        .rates
        .iter()
        .map(|(key, counts)| {
            let windows = settings
                .rate_windows
                .iter()
                .map(|window| window_name(*window))
                .zip(counts.iter().copied())
                .collect();
            (key.dimension.as_str().to_owned(), windows)
        })
        .collect();
    let signals = derive_signals(
        &prepared.validation,
        RequestFacts {
            tenant: input.tenant.clone(),
            registration_type: prepared.registration_type,
            client_id: prepared.client_id.clone(),
            caller: input.caller.clone(),
            initial_access_token: prepared.initial_access_token,
            completed_challenges: completed,
            cimd_cache: prepared
                .cimd
                .as_ref()
                .map(|info| info.cache.as_str().to_owned()),
            software_statement_issuer: prepared.software_statement_issuer.clone(),
            recognition: prepared.recognition.clone(),
            rates,
            duplicates: observed
                .duplicates
                .as_ref()
                .map_or(0, |stats| stats.approved),
            duplicate_first_seen: observed
                .duplicates
                .as_ref()
                .map(|stats| from_millis(stats.first_seen_ms)),
            now: stamp.now,
        },
    );
    let outcome = policies.decide(&signals, &prepared.fingerprint, input.explain);
    let challenges = outcome.challenges.clone();
    apply_outcome(&mut answer, outcome, prepared.registration_type);
    findings.extend(std::mem::take(&mut answer.findings));
    answer.findings = bounded(findings);
    match answer.decision {
        Decision::StepUp => {
            let (reference, opens) = step_up::hold(
                redemption.pending.as_ref(),
                NewTicket {
                    ticket_id: stamp.ticket_id.clone(),
                    decision_id: stamp.decision_id.clone(),
                    tenant: input.tenant.clone(),
                    fingerprint: prepared.fingerprint.clone(),
                    challenges,
                    now_ms: millis(stamp.now),
                    ttl: settings.step_up_ttl,
                    client_id: draft.client_id.clone(),
                    client_name: draft.client_name.clone(),
                    binding,
                    reasons: answer.reasons.clone(),
                    findings: answer.findings.clone(),
                    max_uses: settings.ticket_uses,
                },
            );
            answer.step_up = Some(reference);
            draft.opens = opens;
        }
        Decision::Approve => draft.redeems = redemption.redeems,
        Decision::Deny => {}
    }
    Decided { answer, draft }
}

fn apply_outcome(
    answer: &mut Evaluated,
    outcome: PolicyOutcome,
    registration_type: RegistrationType,
) {
    answer.decision = outcome.decision;
    answer.explain_json = outcome.explain.map(|json| json.to_string());
    match outcome.decision {
        Decision::Approve => answer.obligations = outcome.obligations,
        Decision::StepUp => {}
        Decision::Deny => {
            let code = outcome
                .error
                .unwrap_or_else(|| errors::error_for_policy_deny(registration_type));
            let description = outcome
                .reasons
                .iter()
                .map(|reason| reason.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            answer.error = Some((code, description));
        }
    }
    answer.reasons = outcome.reasons;
    answer.findings = outcome.findings;
}

/// Checks that decisions under `settings` build a context the policies' schema accepts:
/// every rate dimension present, with the configured windows (`rates.windows_secs`), which
/// the schema's `RateWindows` must name. Run when a policy set is loaded.
pub fn check_context(
    policies: &PolicyBundle,
    settings: &EngineSettings,
) -> Result<(), ContextMismatch> {
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
            caller: Caller {
                ip: Some(std::net::IpAddr::from([192, 0, 2, 1])),
                ..Default::default()
            },
            initial_access_token: false,
            completed_challenges: Vec::new(),
            cimd_cache: Some("hit".to_owned()),
            software_statement_issuer: None,
            recognition: Default::default(),
            rates: RateDimension::ALL
                .iter()
                .map(|dimension| (dimension.as_str().to_owned(), windows.clone()))
                .collect(),
            duplicates: 0,
            duplicate_first_seen: Some(std::time::UNIX_EPOCH),
            now: std::time::UNIX_EPOCH,
        },
    );
    policies
        .check_context_shape(&signals)
        .map_err(|error| ContextMismatch {
            problem: error.to_string(),
            windows: windows.into_iter().map(|(name, _)| name).collect(),
        })
}

/// The decision context does not fit the policies' schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the decision context does not fit the schema ({problem}); the rate windows configured \
     (`rates.windows_secs`: {}) must be the members of the schema's `RateWindows`",
    windows.join(", ")
)]
pub struct ContextMismatch {
    pub problem: String,
    /// The names of the configured rate windows.
    pub windows: Vec<String>,
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

/// The error description of a spec deny: the first error, and how many more there are.
fn describe_findings(findings: &[Finding]) -> String {
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.is_error()).collect();
    match errors.as_slice() {
        [] => "the registration was refused".to_owned(),
        [only] => only.message.clone(),
        [first, rest @ ..] => format!("{} (and {} more)", first.message, rest.len()),
    }
}
