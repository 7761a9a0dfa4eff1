//! The decision pipeline: request → validate → signals → decide → record → response.
//!
//! [`decide_dcr`] is the pure part (a function of its inputs and the clock it is
//! given); [`Engine::evaluate`] adds the one side effect, recording the decision durably
//! before it is returned. A decision that could not be recorded is never returned.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::errors::{self, OAuthErrorCode, ServiceError};
use crate::fingerprint::fingerprint;
use crate::policy::{Decision, PolicyBundle, PolicyOutcome, Reason};
use crate::registration::{Code, Finding, Profile, Severity, validate_dcr};
use crate::signals::{Caller, RegistrationType, RequestFacts, derive_signals};
use crate::store::{DecisionRecord, StepUpRef, StepUpTicket, Store, TicketState};

/// The step-up challenge that only an operator can complete.
pub const ADMIN_APPROVAL: &str = "admin_approval";

/// How a client is registering, as the authorization server reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    Dcr {
        metadata_json: String,
        initial_access_token: bool,
    },
    Cimd {
        client_id: String,
        redirect_uri: String,
    },
}

/// A well-formed Evaluate call.
#[derive(Clone, Debug)]
pub struct EvaluateInput {
    pub tenant: String,
    pub registration: Registration,
    pub caller: Caller,
    pub step_up_ticket: String,
    pub completed_challenges: Vec<String>,
    pub dry_run: bool,
    pub explain: bool,
}

/// Settings the pipeline reads; they come from the configuration.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub profile: Profile,
    /// Challenge kinds the authorization server may attest in `completed_challenges`.
    pub attested_challenges: Vec<String>,
    pub step_up_ttl: Duration,
}

/// The outcome of one Evaluate call.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluated {
    /// `None` for a dry run, which records nothing.
    pub decision_id: Option<String>,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    pub findings: Vec<Finding>,
    pub error: Option<(OAuthErrorCode, String)>,
    pub step_up: Option<StepUpRef>,
    pub obligations: Vec<String>,
    pub client_metadata_json: String,
    pub policy_version: String,
    pub fingerprint: String,
    pub explain_json: Option<String>,
    pub client_name: Option<String>,
    pub software_id: Option<String>,
}

/// Decides one DCR registration (the body `metadata_json`) without recording it.
pub fn decide_dcr(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    input: &EvaluateInput,
    metadata_json: &str,
    initial_access_token: bool,
    now: SystemTime,
) -> Evaluated {
    let validation = validate_dcr(metadata_json, settings.profile);
    let mut findings = validation.findings.clone();
    let completed = accepted_challenges(input, settings, &mut findings);
    let print = fingerprint(RegistrationType::Dcr, None, &validation.metadata);
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
        client_name: validation.metadata.client_name.clone(),
        software_id: validation.metadata.software_id.clone(),
    };
    if validation.has_errors() {
        let code = errors::error_for_findings(&findings, RegistrationType::Dcr);
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
            registration_type: RegistrationType::Dcr,
            client_id: None,
            caller: input.caller.clone(),
            initial_access_token,
            completed_challenges: completed,
            now,
        },
    );
    let outcome = policies.decide(&signals, &print, input.explain);
    apply_outcome(&mut evaluated, outcome, settings, now);
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
            evaluated.step_up = Some(StepUpRef {
                ticket_id: ulid::Ulid::from_datetime(now).to_string(),
                challenges: outcome.challenges,
                expires_at_ms: millis(now + settings.step_up_ttl),
            });
        }
        Decision::Deny => {
            let code = outcome
                .error
                .unwrap_or_else(|| errors::error_for_policy_deny(RegistrationType::Dcr));
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
    if !input.step_up_ticket.is_empty() {
        findings.push(Finding {
            code: Code::StepUpTicketIgnored,
            severity: Severity::Warning,
            field: "step_up.ticket_id".to_owned(),
            message: "this clientgate does not redeem step-up tickets yet; the ticket was ignored"
                .to_owned(),
        });
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

pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The pipeline with its policies and store.
pub struct Engine {
    policies: RwLock<Arc<PolicyBundle>>,
    store: Arc<dyn Store>,
    settings: EngineSettings,
}

impl Engine {
    pub fn new(policies: PolicyBundle, store: Arc<dyn Store>, settings: EngineSettings) -> Engine {
        Engine {
            policies: RwLock::new(Arc::new(policies)),
            store,
            settings,
        }
    }

    /// The policy set in force.
    pub fn policies(&self) -> Arc<PolicyBundle> {
        match self.policies.read() {
            Ok(policies) => policies.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Decides, records (unless a dry run) and returns. A store failure is an error,
    /// never a decision.
    pub async fn evaluate(&self, input: EvaluateInput) -> Result<Evaluated, ServiceError> {
        let started = Instant::now();
        let now = SystemTime::now();
        let policies = self.policies();
        let mut evaluated = match &input.registration {
            Registration::Dcr {
                metadata_json,
                initial_access_token,
            } => decide_dcr(
                &policies,
                &self.settings,
                &input,
                metadata_json,
                *initial_access_token,
                now,
            ),
            Registration::Cimd { .. } => {
                return Err(ServiceError::Unimplemented(
                    "CIMD registrations are not decided by this version of clientgate yet; \
                     send DCR registrations"
                        .to_owned(),
                ));
            }
        };
        if input.dry_run {
            return Ok(evaluated);
        }
        let decision_id = ulid::Ulid::from_datetime(now).to_string();
        let ticket = evaluated.step_up.as_ref().map(|step_up| StepUpTicket {
            ticket_id: step_up.ticket_id.clone(),
            tenant: input.tenant.clone(),
            state: TicketState::Pending,
            challenges: step_up.challenges.clone(),
            fingerprint: evaluated.fingerprint.clone(),
            decision_id: decision_id.clone(),
            created_at_ms: millis(now),
            expires_at_ms: step_up.expires_at_ms,
        });
        let record = self.record_of(&input, &evaluated, &decision_id, now, started);
        self.store.record(record, ticket).await?;
        evaluated.decision_id = Some(decision_id);
        Ok(evaluated)
    }

    fn record_of(
        &self,
        input: &EvaluateInput,
        evaluated: &Evaluated,
        decision_id: &str,
        now: SystemTime,
        started: Instant,
    ) -> DecisionRecord {
        DecisionRecord {
            decision_id: decision_id.to_owned(),
            decided_at_ms: millis(now),
            tenant: input.tenant.clone(),
            registration_type: RegistrationType::Dcr,
            client_id: None,
            client_name: evaluated.client_name.clone(),
            software_id: evaluated.software_id.clone(),
            fingerprint: evaluated.fingerprint.clone(),
            ip: input.caller.ip.map(|ip| ip.to_string()),
            user_agent: input.caller.user_agent.clone(),
            decision: evaluated.decision,
            reasons: evaluated.reasons.clone(),
            findings: evaluated.findings.clone(),
            error: evaluated.error.as_ref().map(|(code, _)| *code),
            error_description: evaluated.error.as_ref().map(|(_, text)| text.clone()),
            obligations: evaluated.obligations.clone(),
            step_up: evaluated.step_up.clone(),
            policy_version: evaluated.policy_version.clone(),
            latency_micros: started.elapsed().as_micros() as u64,
            client_metadata_json: evaluated.client_metadata_json.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::load_policy_dir;
    use crate::store::SledStore;

    fn input(metadata_json: &str) -> EvaluateInput {
        EvaluateInput {
            tenant: "acme".to_owned(),
            registration: Registration::Dcr {
                metadata_json: metadata_json.to_owned(),
                initial_access_token: false,
            },
            caller: Caller {
                ip: Some("203.0.113.7".parse().unwrap()),
                ..Caller::default()
            },
            step_up_ticket: String::new(),
            completed_challenges: Vec::new(),
            dry_run: false,
            explain: false,
        }
    }

    #[tokio::test]
    async fn a_step_up_records_a_pending_ticket_with_its_challenges() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let policies =
            load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        let engine = Engine::new(
            policies,
            store.clone(),
            EngineSettings {
                profile: Profile::Mcp,
                attested_challenges: Vec::new(),
                step_up_ttl: Duration::from_secs(600),
            },
        );
        let evaluated = engine
            .evaluate(input(
                r#"{"client_uri":"https://app.example.com","redirect_uris":["https://cb.example.net/cb"]}"#,
            ))
            .await
            .unwrap();
        assert_eq!(evaluated.decision, Decision::StepUp);
        let step_up = evaluated.step_up.expect("a step-up names its ticket");
        let ticket = store
            .ticket(&step_up.ticket_id)
            .unwrap()
            .expect("the ticket is stored");
        assert_eq!(ticket.state, TicketState::Pending);
        assert_eq!(ticket.challenges, vec![ADMIN_APPROVAL]);
        assert_eq!(ticket.tenant, "acme");
        assert_eq!(ticket.fingerprint, evaluated.fingerprint);
        assert_eq!(Some(ticket.decision_id.clone()), evaluated.decision_id);
        assert_eq!(ticket.expires_at_ms - ticket.created_at_ms, 600_000);

        let record = store
            .get_decision(&ticket.decision_id)
            .unwrap()
            .expect("recorded");
        assert_eq!(record.step_up.map(|s| s.ticket_id), Some(step_up.ticket_id));
        assert_eq!(record.ip.as_deref(), Some("203.0.113.7"));
    }
}
