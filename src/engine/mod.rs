//! The decision pipeline: request → validate → signals → decide → record → response.
//!
//! [`prepare_dcr`], [`prepare_cimd`] (in `prepare.rs`) and [`decide`] (in `decide.rs`) are
//! the pure part: functions of their inputs, the clock and the ids they are given.
//! [`Engine::evaluate`] adds the side effects: minting ids, resolving a CIMD document
//! through the cache and the fetcher, observing the store, and recording the decision
//! durably before it is returned. A decision that could not be recorded is never returned.

mod decide;
mod prepare;
mod shadow;

#[cfg(test)]
mod tests;

use crate::cimd::changes;
use crate::cimd::source::{held_to_pin, pinned, resolve_supplied};
use crate::known_clients::{Pin, Registry};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

pub use decide::{
    ContextMismatch, Decided, DecisionDraft, Observed, Stamp, check_context, decide, decide_dcr,
    window_name,
};
pub use prepare::{CimdLookup, Prepared, prepare_cimd, prepare_dcr};

use crate::address::AddressRules;
use crate::cimd::client_id::check_client_id;
use crate::cimd::document::DocumentRules;
use crate::cimd::source::{CimdInfo, CimdSource};
use crate::errors::{OAuthErrorCode, ServiceError};
use crate::events::{Event, Events};
use crate::policy::PolicyBundle;
use crate::registration::software_statement::TrustedIssuers;
use crate::registration::{Finding, Profile};
use crate::step_up::{self, PresentedTicket};
use crate::step_up::{OperatorResolution, StepUpRef, StepUpTicket};
use crate::store::{
    AdminAction, DecisionRecord, Observation, Recorded, ResolveError, Store, StoreError,
};
use crate::vocab::{Caller, from_millis, millis};
use crate::vocab::{Decision, Reason};

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
    /// How many approvals one approved ticket gives.
    pub ticket_uses: u32,
    /// Grant types a CIMD client may keep; others are filtered out.
    pub cimd_supported_grant_types: Vec<String>,
    /// Development only: loopback CIMD hosts are not special-use.
    pub cimd_addresses: AddressRules,
    /// The sliding windows of the rate counters.
    pub rate_windows: Vec<Duration>,
    /// Issuers whose software statements are trusted.
    pub trusted_issuers: TrustedIssuers,
}

/// Settings for the crate's unit tests (which may not reach up into `config`): the `mcp`
/// profile, the default attestable challenges and CIMD grant types, the starter pack's
/// rate windows (`1m`, `1h`, `24h`), tickets pending ten minutes, no trusted issuers.
#[cfg(test)]
pub(crate) fn test_settings() -> EngineSettings {
    let owned = |items: &[&str]| items.iter().map(|item| item.to_string()).collect();
    EngineSettings {
        profile: Profile::Mcp,
        attested_challenges: owned(crate::step_up::DEFAULT_ATTESTED_CHALLENGES),
        step_up_ttl: Duration::from_secs(600),
        ticket_uses: crate::step_up::DEFAULT_TICKET_USES,
        cimd_supported_grant_types: owned(crate::cimd::document::DEFAULT_SUPPORTED_GRANT_TYPES),
        cimd_addresses: AddressRules::default(),
        rate_windows: vec![
            Duration::from_secs(60),
            Duration::from_secs(3600),
            Duration::from_secs(86_400),
        ],
        trusted_issuers: TrustedIssuers::default(),
    }
}

/// A DCR call for the crate's unit tests: tenant `acme`, caller 203.0.113.7, recorded.
#[cfg(test)]
pub(crate) fn test_input(metadata_json: &str) -> EvaluateInput {
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

impl EngineSettings {
    pub fn document_rules(&self) -> DocumentRules {
        DocumentRules {
            profile: self.profile,
            supported_grant_types: self.cimd_supported_grant_types.clone(),
            addresses: self.cimd_addresses.clone(),
        }
    }
}

/// The answer to one Evaluate call.
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
    /// Where the CIMD document came from; `None` for DCR and when nothing was fetched.
    pub cimd: Option<CimdInfo>,
    /// The first approved decision with the same fingerprint, when there is one.
    pub duplicate_of: Option<String>,
}

/// How a CIMD decision had its document, as the metrics count it: the cache status, or
/// the code of the finding that says why the fetch failed (`None` for DCR).
fn cimd_outcome(input: &EvaluateInput, answer: &Evaluated) -> Option<&'static str> {
    if !matches!(input.registration, Registration::Cimd { .. }) {
        return None;
    }
    if let Some(info) = &answer.cimd {
        return Some(info.cache.as_str());
    }
    use crate::registration::Code;
    let failed = answer.findings.iter().find(|finding| {
        matches!(
            finding.code,
            Code::FetchFailed
                | Code::Timeout
                | Code::FetcherBusy
                | Code::TooLarge
                | Code::StatusNot200
                | Code::Unexpected304
                | Code::BadMediaType
                | Code::RedirectNotFollowed
                | Code::SpecialUseAddress
                | Code::PortNotAllowed
                | Code::PinnedDocumentMismatch
        )
    });
    Some(failed.map_or("not_fetched", |finding| finding.code.as_str()))
}

/// The pipeline with its policies and store.
pub struct Engine {
    policies: RwLock<Arc<PolicyBundle>>,
    /// Candidate policies evaluated beside the live ones (shadow rollout).
    shadow: RwLock<Option<Arc<PolicyBundle>>>,
    store: Arc<dyn Store>,
    cimd: CimdSource,
    settings: EngineSettings,
    events: Events,
    /// When and why the store refused the last decision given to it; cleared by the next
    /// recorded one (`/readyz` reports it).
    store_failure: std::sync::Mutex<Option<(Instant, String)>>,
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
            events: Events::default(),
            store_failure: std::sync::Mutex::new(None),
        }
    }

    /// Why the store refused the last decision, if no later one has been recorded and it
    /// happened within `within` (an older failure is for a fresh check to confirm: a
    /// replica out of rotation gets no decisions that would clear it).
    pub fn last_store_failure(&self, within: Duration) -> Option<String> {
        self.store_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < within)
            .map(|(_, why)| why.clone())
    }

    /// The engine publishing what it decides to `events` (metrics, webhooks, export).
    pub fn with_events(mut self, events: Events) -> Engine {
        self.events = events;
        self
    }

    pub fn events(&self) -> &Events {
        &self.events
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
        let policies = self.policies();
        let mut prepared = self
            .prepare(&input, policies.registry(), SystemTime::now())
            .await;
        let approval_to_remember = self.compare_with_approved(&input, &mut prepared)?;
        prepared.recognize(policies.registry());
        // A candidate policy set may say other things of the tenant's authorization server:
        // it is held to its own (the copy is made only while a shadow set is loaded).
        let unheld = self.shadow().map(|_| prepared.clone());
        prepared.hold_to(policies.capabilities(&input.tenant), self.settings.profile);
        // A decision that redeems an approved ticket is recorded only while the ticket has
        // a use left; when another decision took the last one first, decide again (the
        // ticket now reads as used). Each round re-reads what the store observed.
        let mut round = 0;
        loop {
            round += 1;
            let stamp = mint(SystemTime::now());
            let observed = self.observe(&input, &prepared, stamp.now).await?;
            let Decided { mut answer, draft } = decide(
                &policies,
                &self.settings,
                &input,
                &prepared,
                &observed,
                &stamp,
            );
            if input.dry_run {
                return Ok(answer);
            }
            let opens = draft.opens.clone();
            let record = record_of(&input, &answer, draft, &stamp, started);
            let rate_keys = observed.rates.iter().map(|(key, _)| key.clone()).collect();
            let recorded = match self
                .store
                .record(record.clone(), opens.clone(), rate_keys)
                .await
            {
                Err(StoreError::TicketSpent { .. }) if round < 3 => continue,
                outcome => {
                    let mut failure = self
                        .store_failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    *failure = outcome
                        .as_ref()
                        .err()
                        .map(|error| (Instant::now(), error.to_string()));
                    drop(failure);
                    outcome?
                }
            };
            self.events.decided(
                &record,
                recorded == Recorded::Kept,
                cimd_outcome(&input, &answer),
            );
            if recorded == Recorded::Shed {
                // A repeated denial of a malformed registration, over the store's budget:
                // answered and counted, not kept (so it has no id to look up).
                return Ok(answer);
            }
            if let Some(opened) = opens {
                self.events.publish(Event::StepUpOpened(Arc::new(opened)));
            }
            if let Some(candidate) = self.shadow() {
                let mut for_candidate = unheld.clone().unwrap_or_else(|| prepared.clone());
                for_candidate.recognize(candidate.registry());
                for_candidate.hold_to(candidate.capabilities(&input.tenant), self.settings.profile);
                self.shadow_evaluate(
                    &input,
                    &answer,
                    &candidate,
                    &for_candidate,
                    &observed,
                    &record,
                );
            }
            if answer.decision == Decision::Approve
                && let (Some(client_id), Some(snapshot)) =
                    (&prepared.client_id, &approval_to_remember)
            {
                // After the decision is recorded: only an approval that was recorded moves
                // what a later change is compared with. A failure is logged; the change is
                // then reported again, on the safe side.
                if let Err(error) =
                    self.store
                        .set_approved_document(&input.tenant, client_id, snapshot)
                {
                    tracing::warn!(%error, client_id, "cannot remember an approved CIMD document");
                }
            }
            answer.decision_id = Some(record.decision_id);
            return Ok(answer);
        }
    }

    /// Resolves a step-up ticket for an operator and records who did it in the audit
    /// trail, durably, before answering: the one path the admin API and the console share.
    /// A resolution whose audit record failed is an error (repeating it is harmless).
    pub async fn resolve_step_up(
        &self,
        ticket_id: &str,
        resolution: OperatorResolution,
        actor: String,
        peer: Option<String>,
    ) -> Result<Result<StepUpTicket, ResolveError>, StoreError> {
        let now_ms = resolution.now_ms;
        let resolved = self.store.resolve_ticket(ticket_id, resolution).await?;
        let outcome = match &resolved {
            Ok((ticket, true)) => ticket.state.as_str().to_owned(),
            Ok((ticket, false)) => format!("already {}", ticket.state.as_str()),
            Err(refused) => format!("refused: {refused}"),
        };
        self.store
            .record_admin_action(AdminAction {
                action_id: ulid::Ulid::from_parts(now_ms, ulid::Ulid::new().random()).to_string(),
                at_ms: now_ms,
                actor,
                action: "resolve_step_up".to_owned(),
                target: ticket_id.to_owned(),
                outcome,
                peer,
            })
            .await?;
        match &resolved {
            Ok((ticket, true)) => {
                self.events
                    .publish(Event::StepUpResolved(Arc::new(ticket.clone())));
            }
            // Repeating the resolution a ticket has is harmless and tells nobody again.
            Ok((_, false)) => {}
            Err(_) => self.events.metrics().step_ups_resolved.add("refused", 1),
        }
        Ok(resolved.map(|(ticket, _)| ticket))
    }

    /// CIMD -02 §8.4: compares the document with the one the tenant last approved for this
    /// client_id and notes what changed. Returns the document's snapshot when an approval of
    /// it should be remembered (it differs from what was approved, or nothing was).
    fn compare_with_approved(
        &self,
        input: &EvaluateInput,
        prepared: &mut Prepared,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let (Some(client_id), Some(_)) = (prepared.client_id.clone(), &prepared.cimd) else {
            return Ok(None);
        };
        let snapshot = changes::snapshot(&prepared.validation.metadata);
        let approved = self.store.approved_document(&input.tenant, &client_id)?;
        if approved.as_deref() == Some(snapshot.as_slice()) {
            return Ok(None);
        }
        if let Some(approved) = approved {
            let changed = changes::changed_members(&approved, &snapshot);
            prepared.note_document_changes(changed, self.settings.profile);
        }
        Ok(Some(snapshot))
    }

    /// What the store knows now that bears on deciding `prepared`.
    async fn observe(
        &self,
        input: &EvaluateInput,
        prepared: &Prepared,
        now: SystemTime,
    ) -> Result<Observed, ServiceError> {
        let ticket = self.presented_ticket(&input.step_up_ticket, now)?;
        let keys = prepared.rate_keys(input);
        let Observation { counts, duplicates } = self
            .store
            .observation(
                &keys,
                &self.settings.rate_windows,
                millis(now),
                &prepared.fingerprint,
            )
            .await?;
        Ok(Observed {
            ticket,
            rates: keys.into_iter().zip(counts).collect(),
            duplicates,
        })
    }

    /// Validates the registration; for CIMD, resolves the document first (a document the
    /// registry pins, the cache or one shared fetch) unless the client_id's URL checks
    /// refuse it.
    async fn prepare(
        &self,
        input: &EvaluateInput,
        registry: &Registry,
        now: SystemTime,
    ) -> Prepared {
        match &input.registration {
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
                    &self.settings.cimd_addresses,
                );
                let rules = self.settings.document_rules();
                let resolution = match &check.url {
                    None => None,
                    Some(url) => Some(match registry.pin(client_id) {
                        Some(Pin::Document(body)) => {
                            pinned(resolve_supplied(body, client_id, &rules, millis(now)))
                        }
                        Some(Pin::Sha256(expected)) => held_to_pin(
                            self.cimd.resolve(url, &rules).await,
                            expected,
                            self.settings.profile,
                        ),
                        None => self.cimd.resolve(url, &rules).await,
                    }),
                };
                prepare_cimd(CimdLookup {
                    profile: self.settings.profile,
                    client_id: client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    client_id_findings: check.findings,
                    resolution,
                })
            }
        }
    }

    /// Decides a recorded call again with the candidate policies and records any
    /// disagreement. Never changes the answer; a failure to record is logged.
    fn shadow_evaluate(
        &self,
        input: &EvaluateInput,
        live: &Evaluated,
        candidate: &PolicyBundle,
        prepared: &Prepared,
        observed: &Observed,
        record: &DecisionRecord,
    ) {
        let quiet = EvaluateInput {
            explain: false,
            ..input.clone()
        };
        let stamp = Stamp {
            now: from_millis(record.decided_at_ms),
            decision_id: record.decision_id.clone(),
            ticket_id: String::new(),
        };
        let other = decide(
            candidate,
            &self.settings,
            &quiet,
            prepared,
            observed,
            &stamp,
        );
        if let Some(disagreement) = shadow::compare(live, &other.answer, record) {
            tracing::info!(
                decision_id = %record.decision_id,
                live = ?disagreement.live.decision,
                candidate = ?disagreement.candidate.decision,
                "shadow policies disagree"
            );
            if let Err(error) = self.store.record_disagreement(&disagreement) {
                tracing::warn!(%error, decision_id = %record.decision_id, "could not record a shadow disagreement");
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
            Some(ticket) => PresentedTicket::Found(Box::new(step_up::as_of(ticket, millis(now)))),
        }))
    }
}

/// Fresh ids for a decision at `now`: ULIDs, which sort by time.
fn mint(now: SystemTime) -> Stamp {
    Stamp {
        now,
        decision_id: ulid::Ulid::from_datetime(now).to_string(),
        ticket_id: ulid::Ulid::from_datetime(now).to_string(),
    }
}

/// The decision record of an answer: the answer, the draft and the call it answers.
fn record_of(
    input: &EvaluateInput,
    answer: &Evaluated,
    draft: DecisionDraft,
    stamp: &Stamp,
    started: Instant,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: stamp.decision_id.clone(),
        decided_at_ms: millis(stamp.now),
        tenant: input.tenant.clone(),
        registration_type: draft.registration_type,
        client_id: draft.client_id,
        client_name: draft.client_name,
        software_id: draft.software_id,
        fingerprint: answer.fingerprint.clone(),
        ip: input.caller.ip.map(|ip| ip.to_string()),
        user_agent: input.caller.user_agent.clone(),
        decision: answer.decision,
        reasons: answer.reasons.clone(),
        findings: answer.findings.clone(),
        error: answer.error.as_ref().map(|(code, _)| *code),
        error_description: answer.error.as_ref().map(|(_, text)| text.clone()),
        obligations: answer.obligations.clone(),
        step_up: answer.step_up.clone(),
        policy_version: answer.policy_version.clone(),
        latency_micros: started.elapsed().as_micros() as u64,
        client_metadata_json: answer.client_metadata_json.clone(),
        redeemed_ticket: draft.redeems,
    }
}
