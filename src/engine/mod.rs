//! The decision pipeline: request → validate → signals → decide → record → response.
//!
//! [`prepare_dcr`], [`prepare_cimd`] and [`decide`] are the pure part (functions of their
//! inputs and the clock they are given); [`Engine::evaluate`] adds the side effects:
//! resolving a CIMD document through the cache and the fetcher, observing the store, and
//! recording the decision durably before it is returned. A decision that could not be
//! recorded is never returned.

mod decide;
mod shadow;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

pub use decide::{
    CimdLookup, Observed, Prepared, check_context, decide, decide_dcr, prepare_cimd, prepare_dcr,
    window_name,
};

use crate::cimd::client_id::check_client_id;
use crate::cimd::document::DocumentRules;
use crate::cimd::source::{CimdInfo, CimdSource};
use crate::errors::{OAuthErrorCode, ServiceError};
use crate::policy::PolicyBundle;
use crate::registration::software_statement::TrustedIssuers;
use crate::registration::{Finding, Profile};
use crate::store::{DecisionRecord, StepUpRef, StepUpTicket, Store, TicketState};
use crate::vocab::{Caller, RegistrationType, millis};
use crate::vocab::{Decision, Reason};

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

/// The step-up ticket a call presented, as the store has it (a pending ticket past its
/// expiry already reads as expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedTicket {
    Unknown(String),
    Found(Box<StepUpTicket>),
}

/// Settings the pipeline reads; they come from the configuration.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub profile: Profile,
    /// Challenge kinds the authorization server may attest in `completed_challenges`.
    pub attested_challenges: Vec<String>,
    pub step_up_ttl: Duration,
    /// Grant types a CIMD client may keep; others are filtered out.
    pub cimd_supported_grant_types: Vec<String>,
    /// Development only: loopback CIMD hosts are not special-use.
    pub cimd_allow_loopback: bool,
    /// The sliding windows of the rate counters.
    pub rate_windows: Vec<Duration>,
    /// Issuers whose software statements are trusted.
    pub trusted_issuers: TrustedIssuers,
}

impl EngineSettings {
    pub fn document_rules(&self) -> DocumentRules {
        DocumentRules {
            profile: self.profile,
            supported_grant_types: self.cimd_supported_grant_types.clone(),
            allow_loopback: self.cimd_allow_loopback,
        }
    }
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
    pub registration_type: RegistrationType,
    /// The CIMD client_id; `None` for DCR.
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub software_id: Option<String>,
    /// Where the CIMD document came from; `None` for DCR and when nothing was fetched.
    pub cimd: Option<CimdInfo>,
    /// A STEP_UP that opened a new ticket (not one that keeps a presented pending ticket).
    pub new_ticket: bool,
    /// The first approved decision with the same fingerprint, when there is one.
    pub duplicate_of: Option<String>,
}

/// The pipeline with its policies and store.
pub struct Engine {
    policies: RwLock<Arc<PolicyBundle>>,
    /// Candidate policies evaluated beside the live ones (shadow rollout).
    shadow: RwLock<Option<Arc<PolicyBundle>>>,
    store: Arc<dyn Store>,
    cimd: CimdSource,
    settings: EngineSettings,
}

impl Engine {
    pub fn new(
        policies: PolicyBundle,
        store: Arc<dyn Store>,
        cimd: CimdSource,
        settings: EngineSettings,
    ) -> Engine {
        Engine {
            policies: RwLock::new(Arc::new(policies)),
            shadow: RwLock::new(None),
            store,
            cimd,
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

    /// Puts `policies` in force. Calls already running finish with the set they started
    /// with; calls starting afterwards get the new one, never a mix.
    pub fn replace_policies(&self, policies: PolicyBundle) {
        let policies = Arc::new(policies);
        match self.policies.write() {
            Ok(mut live) => *live = policies,
            Err(poisoned) => *poisoned.into_inner() = policies,
        }
    }

    /// The candidate set evaluated in the shadow of the live one, if any.
    pub fn shadow(&self) -> Option<Arc<PolicyBundle>> {
        match self.shadow.read() {
            Ok(shadow) => shadow.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace_shadow(&self, shadow: Option<PolicyBundle>) {
        let shadow = shadow.map(Arc::new);
        match self.shadow.write() {
            Ok(mut current) => *current = shadow,
            Err(poisoned) => *poisoned.into_inner() = shadow,
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
        let ticket = self.presented_ticket(&input.step_up_ticket, now)?;
        let prepared = match &input.registration {
            Registration::Dcr {
                metadata_json,
                initial_access_token,
            } => prepare_dcr(&self.settings, metadata_json, *initial_access_token, now),
            Registration::Cimd {
                client_id,
                redirect_uri,
            } => {
                let check = check_client_id(
                    client_id,
                    self.settings.profile,
                    self.settings.cimd_allow_loopback,
                );
                let resolution = match &check.url {
                    Some(url) => Some(
                        self.cimd
                            .resolve(url, &self.settings.document_rules())
                            .await,
                    ),
                    None => None,
                };
                prepare_cimd(CimdLookup {
                    client_id: client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    client_id_findings: check.findings,
                    resolution,
                })
            }
        };
        let rate_keys = prepared.rate_keys(&input);
        let counts =
            self.store
                .rate_counts(&rate_keys, &self.settings.rate_windows, millis(now))?;
        let observed = Observed {
            ticket,
            rates: rate_keys
                .iter()
                .map(|key| key.dimension)
                .zip(counts)
                .collect(),
            duplicates: self.store.fingerprint_stats(&prepared.fingerprint)?,
        };
        let shadow = self
            .shadow()
            .filter(|_| !input.dry_run)
            .map(|candidate| (candidate, prepared.clone(), observed.clone()));
        let mut evaluated = decide(&policies, &self.settings, &input, prepared, observed, now);
        if input.dry_run {
            return Ok(evaluated);
        }
        let decision_id = ulid::Ulid::from_datetime(now).to_string();
        let ticket = evaluated
            .step_up
            .as_ref()
            .filter(|_| evaluated.new_ticket)
            .map(|step_up| StepUpTicket {
                ticket_id: step_up.ticket_id.clone(),
                tenant: input.tenant.clone(),
                state: TicketState::Pending,
                challenges: step_up.challenges.clone(),
                fingerprint: evaluated.fingerprint.clone(),
                decision_id: decision_id.clone(),
                created_at_ms: millis(now),
                expires_at_ms: step_up.expires_at_ms,
                resolved_at_ms: None,
                resolver: String::new(),
                note: String::new(),
                client_id: evaluated.client_id.clone(),
                client_name: evaluated.client_name.clone(),
            });
        let record = self.record_of(&input, &evaluated, &decision_id, now, started);
        self.store.record(record, ticket, rate_keys).await?;
        if let Some((candidate, prepared, observed)) = shadow {
            self.shadow_evaluate(
                &input,
                &evaluated,
                &candidate,
                prepared,
                observed,
                &decision_id,
                now,
            );
        }
        evaluated.decision_id = Some(decision_id);
        Ok(evaluated)
    }

    /// Decides a recorded call again with the candidate policies and records any
    /// disagreement. Never changes the answer; a failure to record is logged.
    #[allow(clippy::too_many_arguments)]
    fn shadow_evaluate(
        &self,
        input: &EvaluateInput,
        live: &Evaluated,
        candidate: &PolicyBundle,
        prepared: Prepared,
        observed: Observed,
        decision_id: &str,
        now: SystemTime,
    ) {
        let quiet = EvaluateInput {
            explain: false,
            ..input.clone()
        };
        let other = decide(candidate, &self.settings, &quiet, prepared, observed, now);
        if let Some(disagreement) =
            shadow::compare(live, &other, decision_id, millis(now), &input.tenant)
        {
            tracing::info!(
                decision_id,
                live = ?disagreement.live.decision,
                candidate = ?disagreement.candidate.decision,
                "shadow policies disagree"
            );
            if let Err(error) = self.store.record_disagreement(&disagreement) {
                tracing::warn!(%error, decision_id, "could not record a shadow disagreement");
            }
        }
    }

    /// The ticket the call presents, as the store has it now.
    fn presented_ticket(
        &self,
        ticket_id: &str,
        now: SystemTime,
    ) -> Result<Option<PresentedTicket>, ServiceError> {
        if ticket_id.is_empty() {
            return Ok(None);
        }
        Ok(Some(match self.store.get_ticket(ticket_id)? {
            None => PresentedTicket::Unknown(ticket_id.to_owned()),
            Some(mut ticket) => {
                ticket.state = crate::step_up::effective_state(&ticket, millis(now));
                PresentedTicket::Found(Box::new(ticket))
            }
        }))
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
            registration_type: evaluated.registration_type,
            client_id: evaluated.client_id.clone(),
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
