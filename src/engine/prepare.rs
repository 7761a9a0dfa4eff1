//! Preparing a registration for its decision, purely: validating a DCR body (a software
//! statement verified on the way) or a resolved CIMD document, identifying the registration
//! (its fingerprint) and naming the rate counters it reads and adds to.

use std::time::SystemTime;

use super::{EngineSettings, EvaluateInput};
use crate::cimd::redirect_match::match_redirect_uri;
use crate::cimd::source::{CimdInfo, DocumentResolution};
use crate::fingerprint::fingerprint;
use crate::known_clients::{Presented, Recognition, Registry};
use crate::registration::capabilities::{self, Capabilities};
use crate::registration::findings::FindingList;
use crate::registration::software_statement::{StatementCheck, verify};
use crate::registration::uri::registrable_domain;
use crate::registration::{Code, Finding, Profile, Validation, validate_dcr};
use crate::step_up::Binding;
use crate::store::{RateDimension, RateKey};
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
    /// What the known-clients registry makes of it, once [`Prepared::recognize`] asked.
    pub recognition: Recognition,
}

impl Prepared {
    /// What a ticket opened for this registration binds, and what a ticket presented with
    /// it must have bound: the normalized metadata as the answer returns it, and the CIMD
    /// document's hash.
    pub fn binding(&self) -> Binding {
        Binding::of(
            &self.validation.metadata.to_json(),
            self.cimd.as_ref().map(|info| info.document_sha256.as_str()),
        )
    }

    /// Asks the known-clients registry which client this is (or borrows the name of): for
    /// the counters keyed by identity and for the policies, once per decision.
    pub fn recognize(&mut self, registry: &Registry) {
        let metadata = &self.validation.metadata;
        self.recognition = registry.recognize(&Presented {
            client_id: self.client_id.as_deref(),
            client_name: metadata.client_name.as_deref(),
            redirect_uris: &metadata.redirect_uris,
            grant_types: &metadata.grant_types,
        });
    }

    /// Holds the normalized metadata to what the tenant's authorization server supports
    /// (rules 98 and 99); nothing changes when the tenant does not say.
    pub fn hold_to(&mut self, capabilities: Option<&Capabilities>, profile: Profile) {
        if let Some(capabilities) = capabilities {
            capabilities::apply(&mut self.validation, capabilities, profile);
        }
    }

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
            recognition: Recognition::default(),
        }
    }

    /// The rate counters this registration reads and, when recorded, adds to: the caller's
    /// IP, the registrable domain of the client_id (CIMD) or `client_uri` (DCR), the tenant,
    /// the fingerprint, and — when it has them — the known client it is and its
    /// `software_id`.
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
            (
                RateDimension::KnownClient,
                self.recognition.known_client.clone(),
            ),
            (
                RateDimension::SoftwareId,
                self.validation.metadata.software_id.clone(),
            ),
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
            let mut found = FindingList::new(settings.profile);
            found.report(code, "software_statement", message);
            validation.findings.extend(found.into_vec());
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

impl Prepared {
    /// Rule 100: notes that the CIMD document differs in `changed` members from the one the
    /// tenant last approved — in the answer's cache facts and as warnings.
    pub fn note_document_changes(&mut self, changed: Vec<String>, profile: Profile) {
        let Some(info) = self.cimd.as_mut() else {
            return;
        };
        self.validation
            .findings
            .extend(change_findings(&changed, profile));
        info.changed_members = changed;
    }
}

/// Rule 100 (CIMD -02 §8.4, §8.4.1): a document that changed since the tenant last approved
/// it says so, as warnings policies see — its redirect URIs, its keys, or what the consent
/// screen shows and how the client authenticates.
fn change_findings(changed: &[String], profile: Profile) -> Vec<Finding> {
    let mut findings = FindingList::new(profile);
    let mut report = |code, members: &[&str], what: &str| {
        let hit: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|member| members.contains(member))
            .collect();
        if !hit.is_empty() {
            findings.report(
                code,
                &hit.join(", "),
                format!(
                    "the document changed its {what} ({}) since a decision last approved it",
                    hit.join(", ")
                ),
            );
        }
    };
    report(
        Code::DocumentRedirectUrisChanged,
        &["redirect_uris"],
        "redirect URIs",
    );
    report(Code::DocumentKeysChanged, &["jwks", "jwks_uri"], "keys");
    report(
        Code::DocumentChanged,
        &[
            "token_endpoint_auth_method",
            "token_endpoint_auth_methods_supported",
            "client_name",
            "logo_uri",
        ],
        "authentication method, name or logo",
    );
    findings.into_vec()
}

/// What the edges found out about a CIMD client before deciding.
#[derive(Clone, Debug)]
pub struct CimdLookup {
    /// The validation profile, which sets the level of each finding.
    pub profile: Profile,
    pub client_id: String,
    /// The authorization request's redirect_uri; empty when there is none.
    pub redirect_uri: String,
    /// Findings of the client_id URL checks.
    pub client_id_findings: Vec<Finding>,
    /// The resolved document; `None` when the URL checks refused the client_id, so nothing
    /// was fetched.
    pub resolution: Option<DocumentResolution>,
}

/// Turns a CIMD lookup into a prepared registration: the document's validation, or the
/// findings of why there is no usable document, and the redirect_uri match (D1–D14).
pub fn prepare_cimd(lookup: CimdLookup) -> Prepared {
    let CimdLookup {
        profile,
        client_id,
        redirect_uri,
        client_id_findings,
        resolution,
    } = lookup;
    // At the level the profile's table gives each code (`registration/profile.rs`).
    let finding = |code, field: &str, message: String| {
        let mut found = FindingList::new(profile);
        found.report(code, field, message);
        found.into_vec()
    };
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
        Some(DocumentResolution::Failed(failure)) => {
            let mut findings = client_id_findings;
            findings.extend(finding(failure.code, "client_id", failure.message));
            return refused(findings);
        }
        Some(DocumentResolution::Invalid { mut validation }) => {
            validation.findings.splice(0..0, client_id_findings);
            return Prepared::new(
                validation,
                RegistrationType::Cimd,
                Some(client_id),
                false,
                None,
            );
        }
        Some(DocumentResolution::Valid { validation, info }) => (validation, info),
    };
    validation.findings.splice(0..0, client_id_findings);
    if !redirect_uri.is_empty()
        && let Err(refusal) = match_redirect_uri(&validation.metadata.redirect_uris, &redirect_uri)
    {
        validation
            .findings
            .extend(finding(refusal.code, "redirect_uri", refusal.message));
    }
    Prepared::new(
        validation,
        RegistrationType::Cimd,
        Some(client_id),
        false,
        Some(info),
    )
}
