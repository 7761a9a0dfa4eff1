//! Deciding one registration with no server and no store: what `clientgate eval` and the
//! policy test suites run. The store's signals (rate counts, earlier approvals, an approved
//! ticket) are stubbed by the caller; everything else is the service's own pipeline.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::cimd::client_id::check_client_id;
use crate::cimd::fetch::FetchFailure;
use crate::cimd::source::{DocumentResolution, resolve_supplied};
use crate::engine::{
    CimdLookup, EngineSettings, EvaluateInput, Evaluated, Observed, Registration, Stamp, decide,
    prepare_cimd, prepare_dcr, window_name,
};
use crate::policy::PolicyBundle;
use crate::step_up::{self, NewTicket, OperatorResolution, PresentedTicket};
use crate::store::{FingerprintStats, RateDimension};
use crate::vocab::Caller;
use crate::vocab::millis;

/// One registration to decide offline.
#[derive(Clone, Debug)]
pub struct OfflineCase {
    pub tenant: String,
    pub caller: Caller,
    pub registration: OfflineRegistration,
    pub stubs: Stubs,
    pub explain: bool,
}

#[derive(Clone, Debug)]
pub enum OfflineRegistration {
    Dcr {
        metadata_json: String,
        initial_access_token: bool,
    },
    Cimd {
        client_id: String,
        redirect_uri: String,
        /// The document as supplied or fetched, or why the fetch failed.
        document: Result<Vec<u8>, FetchFailure>,
    },
}

/// What the store would have said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stubs {
    /// Registrations already counted: dimension (`ip`, `domain`, `tenant`, `fingerprint`)
    /// → window name (`1m`, `1h`, `24h`) → count. Missing ones are 0.
    pub rates: BTreeMap<String, BTreeMap<String, u64>>,
    /// Earlier approvals of the same registration (fingerprint).
    pub duplicates: u64,
    /// When the first of them was approved; defaults to a day before `now`.
    pub duplicate_first_seen_ms: Option<u64>,
    /// Challenges completed: attested kinds as the AS reports them, `admin_approval` (and
    /// any other kind) as an operator-approved ticket for this very registration.
    pub completed_challenges: Vec<String>,
    /// A DCR software statement's issuer, as if its signature had been verified against
    /// the configured keys.
    pub software_statement_issuer: Option<String>,
    /// The members in which a CIMD document differs from the one cached before it, as if
    /// it had just changed (`cimd::changes`).
    pub document_changed: Vec<String>,
}

/// A stub that names something the configuration does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StubError {
    #[error(
        "unknown rate dimension `{0}` (one of ip, domain, tenant, fingerprint, known_client, software_id)"
    )]
    UnknownDimension(String),
    #[error("unknown rate window `{window}` (the configured windows are {known})")]
    UnknownWindow { window: String, known: String },
}

impl Stubs {
    /// Refuses dimension and window names that would silently count as zero.
    pub fn check(&self, settings: &EngineSettings) -> Result<(), StubError> {
        let windows: Vec<String> = settings
            .rate_windows
            .iter()
            .map(|w| window_name(*w))
            .collect();
        for (dimension, counts) in &self.rates {
            if !RateDimension::ALL.iter().any(|d| d.as_str() == dimension) {
                return Err(StubError::UnknownDimension(dimension.clone()));
            }
            if let Some(window) = counts.keys().find(|window| !windows.contains(window)) {
                return Err(StubError::UnknownWindow {
                    window: window.clone(),
                    known: windows.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Decides `case` by the service's pipeline, with the stubs standing in for the store.
pub fn decide_offline(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    case: &OfflineCase,
    now: SystemTime,
) -> Result<Evaluated, StubError> {
    case.stubs.check(settings)?;
    let (attested, by_operator): (Vec<String>, Vec<String>) = case
        .stubs
        .completed_challenges
        .iter()
        .cloned()
        .partition(|challenge| {
            step_up::redeem::is_attestable(challenge, &settings.attested_challenges)
        });
    let (registration, mut prepared) = match &case.registration {
        OfflineRegistration::Dcr {
            metadata_json,
            initial_access_token,
        } => (
            Registration::Dcr {
                metadata_json: metadata_json.clone(),
                initial_access_token: *initial_access_token,
            },
            {
                let mut prepared = prepare_dcr(settings, metadata_json, *initial_access_token, now);
                if let Some(issuer) = &case.stubs.software_statement_issuer {
                    prepared.software_statement_issuer = Some(issuer.clone());
                }
                prepared
            },
        ),
        OfflineRegistration::Cimd {
            client_id,
            redirect_uri,
            document,
        } => {
            let check = check_client_id(client_id, settings.profile, &settings.cimd_addresses);
            let resolution = check.url.as_ref().map(|_| match document {
                Ok(body) => {
                    resolve_supplied(body, client_id, &settings.document_rules(), millis(now))
                }
                Err(failure) => DocumentResolution::Failed(failure.clone()),
            });
            (
                Registration::Cimd {
                    client_id: client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                },
                prepare_cimd(CimdLookup {
                    profile: settings.profile,
                    client_id: client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    client_id_findings: check.findings,
                    resolution,
                }),
            )
        }
    };
    let input = EvaluateInput {
        tenant: case.tenant.clone(),
        registration,
        caller: case.caller.clone(),
        step_up_ticket: String::new(),
        completed_challenges: attested,
        dry_run: true,
        explain: case.explain,
    };
    prepared.note_document_changes(case.stubs.document_changed.clone(), settings.profile);
    prepared.recognize(policies.registry());
    prepared.hold_to(policies.capabilities(&case.tenant), settings.profile);
    let rates = prepared
        .rate_keys(&input)
        .into_iter()
        .map(|key| {
            let stubbed = case.stubs.rates.get(key.dimension.as_str());
            let counts = settings
                .rate_windows
                .iter()
                .map(|window| {
                    stubbed
                        .and_then(|counts| counts.get(&window_name(*window)))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            (key, counts)
        })
        .collect();
    let duplicates = (case.stubs.duplicates > 0).then(|| FingerprintStats {
        approved: case.stubs.duplicates,
        first_seen_ms: case
            .stubs
            .duplicate_first_seen_ms
            .unwrap_or_else(|| millis(now).saturating_sub(86_400_000)),
        first_decision_id: "(stubbed)".to_owned(),
    });
    let stamp = Stamp::offline(now);
    // An operator-approved ticket for this very registration: opened and resolved by the
    // step-up state machine itself.
    let ticket = (!by_operator.is_empty()).then(|| {
        let (_, opened) = step_up::hold(
            None,
            NewTicket {
                ticket_id: stamp.ticket_id.clone(),
                decision_id: stamp.decision_id.clone(),
                tenant: case.tenant.clone(),
                fingerprint: prepared.fingerprint.clone(),
                challenges: by_operator,
                now_ms: millis(now),
                // Approved the instant it opens, so it must not expire at that instant.
                ttl: settings.step_up_ttl.max(Duration::from_millis(1)),
                client_id: prepared.client_id.clone(),
                client_name: None,
                binding: prepared.binding(),
                reasons: Vec::new(),
                findings: Vec::new(),
                max_uses: settings.ticket_uses,
            },
        );
        let approval = OperatorResolution {
            approve: true,
            resolver: "(stubbed)".to_owned(),
            note: String::new(),
            now_ms: millis(now),
        };
        let opened = opened.expect("holding without a pending ticket opens one");
        let (approved, _) = step_up::resolve(opened, &approval)
            .expect("a ticket opened now with a positive ttl is pending now");
        PresentedTicket::Found(Box::new(approved))
    });
    let observed = Observed {
        ticket,
        rates,
        duplicates,
    };
    Ok(decide(policies, settings, &input, &prepared, &observed, &stamp).answer)
}
