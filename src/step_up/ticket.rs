//! The ticket: what a STEP_UP opens, what the operator reviews and resolves, what a later
//! call presents. Its stored form is part of format version 1 (see `tests/fixtures/store/`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registration::Finding;
use crate::vocab::Reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Pending => "pending",
            TicketState::Approved => "approved",
            TicketState::Denied => "denied",
            TicketState::Expired => "expired",
        }
    }
}

/// A step-up ticket: a registration held back until its challenges are completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpTicket {
    pub ticket_id: String,
    pub tenant: String,
    pub state: TicketState,
    pub challenges: Vec<String>,
    pub fingerprint: String,
    pub decision_id: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub resolved_at_ms: Option<u64>,
    #[serde(default)]
    pub resolver: String,
    #[serde(default)]
    pub note: String,
    /// For people reviewing the ticket: the CIMD client_id and the client_name.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    // Members added within format 1: absent in tickets stored before them, and left out
    // when empty, so those tickets read and write back as they were.
    /// What an approval registers: the bound registration, exactly. `None` in a ticket
    /// stored before binding, which therefore approves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<Binding>,
    /// Why the decision that opened it stepped up: its reasons and findings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// How many approvals one approved ticket gives (`step_up.ticket_uses`); a ticket
    /// stored before this existed gives one.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub max_uses: u32,
    /// The decisions this ticket approved, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redemptions: Vec<TicketRedemption>,
}

fn one() -> u32 {
    1
}

fn is_one(uses: &u32) -> bool {
    *uses == 1
}

/// The registration a ticket approves: the normalized metadata, byte for byte as the
/// decision returned it, its SHA-256, and for CIMD the SHA-256 of the document it came
/// from. A ticket presented for anything else is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub client_metadata_json: String,
    pub metadata_sha256: String,
    #[serde(default)]
    pub document_sha256: Option<String>,
}

impl Binding {
    pub fn of(client_metadata_json: &str, document_sha256: Option<&str>) -> Binding {
        use sha2::{Digest, Sha256};
        Binding {
            client_metadata_json: client_metadata_json.to_owned(),
            metadata_sha256: hex::encode(Sha256::digest(client_metadata_json.as_bytes())),
            document_sha256: document_sha256.map(str::to_owned),
        }
    }
}

/// One approval a ticket gave: the decision it was redeemed for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRedemption {
    pub decision_id: String,
    pub at_ms: u64,
}

impl StepUpTicket {
    /// Whether an approved ticket still has an approval to give.
    pub fn has_uses_left(&self) -> bool {
        (self.redemptions.len() as u64) < u64::from(self.max_uses)
    }

    /// The ticket once it approved `decision_id`, or `None` when it had no approval left
    /// or is not approved: the store applies this in the decision's own transaction, so
    /// two simultaneous redemptions of a single-use ticket give one approval.
    pub fn redeemed(&self, decision_id: &str, at_ms: u64) -> Option<StepUpTicket> {
        if self.state != TicketState::Approved || !self.has_uses_left() {
            return None;
        }
        let mut ticket = self.clone();
        ticket.redemptions.push(TicketRedemption {
            decision_id: decision_id.to_owned(),
            at_ms,
        });
        Some(ticket)
    }
}

impl StepUpTicket {
    /// The host of the CIMD client_id, for people reviewing the ticket.
    pub fn client_id_host(&self) -> Option<String> {
        self.client_id.as_deref().and_then(host_of)
    }

    /// The distinct hosts of the bound registration's `redirect_uris`, in order.
    pub fn redirect_uri_hosts(&self) -> Vec<String> {
        self.binding
            .as_ref()
            .map(|binding| redirect_uri_hosts(&binding.client_metadata_json))
            .unwrap_or_default()
    }
}

/// The host of a URL, as people reading a ticket compare it (a private-use scheme's
/// `cursor://anysphere.cursor-mcp/…` has one too).
fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
}

/// The distinct hosts of the `redirect_uris` of normalized metadata, in order.
fn redirect_uri_hosts(client_metadata_json: &str) -> Vec<String> {
    let metadata: serde_json::Value =
        serde_json::from_str(client_metadata_json).unwrap_or_default();
    let mut hosts: Vec<String> = Vec::new();
    for uri in metadata["redirect_uris"].as_array().into_iter().flatten() {
        if let Some(host) = uri.as_str().and_then(host_of)
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
    }
    hosts
}

/// The step-up ticket an answer (and its decision record) names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpRef {
    pub ticket_id: String,
    pub challenges: Vec<String>,
    pub expires_at_ms: u64,
}

/// What a new ticket is opened with. The ids are minted by the caller, so that opening
/// one stays a function of its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTicket {
    pub ticket_id: String,
    pub decision_id: String,
    pub tenant: String,
    pub fingerprint: String,
    /// The challenges still to be completed.
    pub challenges: Vec<String>,
    pub now_ms: u64,
    pub ttl: Duration,
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub binding: Binding,
    pub reasons: Vec<Reason>,
    pub findings: Vec<Finding>,
    pub max_uses: u32,
}

/// A STEP_UP's ticket. When the call presented a ticket that is still pending for this
/// very registration, the answer keeps pointing at it (the operator is reviewing that one)
/// and nothing new is opened; otherwise a new pending ticket is opened, to be recorded
/// with the decision.
pub fn hold(pending: Option<&StepUpTicket>, new: NewTicket) -> (StepUpRef, Option<StepUpTicket>) {
    if let Some(pending) = pending {
        let kept = StepUpRef {
            ticket_id: pending.ticket_id.clone(),
            challenges: new.challenges,
            expires_at_ms: pending.expires_at_ms,
        };
        return (kept, None);
    }
    let expires_at_ms = new.now_ms + new.ttl.as_millis() as u64;
    let reference = StepUpRef {
        ticket_id: new.ticket_id.clone(),
        challenges: new.challenges.clone(),
        expires_at_ms,
    };
    let ticket = StepUpTicket {
        ticket_id: new.ticket_id,
        tenant: new.tenant,
        state: TicketState::Pending,
        challenges: new.challenges,
        fingerprint: new.fingerprint,
        decision_id: new.decision_id,
        created_at_ms: new.now_ms,
        expires_at_ms,
        resolved_at_ms: None,
        resolver: String::new(),
        note: String::new(),
        client_id: new.client_id,
        client_name: new.client_name,
        binding: Some(new.binding),
        reasons: new.reasons,
        findings: new.findings,
        max_uses: new.max_uses,
        redemptions: Vec::new(),
    };
    (reference, Some(ticket))
}

/// The retention rule: a ticket is kept while it is pending and until `cutoff_ms` has
/// passed both its expiry and its resolution. A pruned ticket can no longer be redeemed:
/// presenting it is an unknown ticket, a DENY.
pub fn is_retained(ticket: &StepUpTicket, cutoff_ms: u64) -> bool {
    let done_at = match ticket.state {
        TicketState::Pending => ticket.expires_at_ms,
        _ => ticket.resolved_at_ms.unwrap_or(ticket.expires_at_ms),
    };
    done_at.max(ticket.expires_at_ms) >= cutoff_ms
}
