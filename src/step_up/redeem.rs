//! What step-up contributes to a later decision: the ticket the call presents and the
//! challenges the authorization server says were completed.
//!
//! The findings made here are clientgate's own, not spec rules, and their severities are
//! fixed here rather than in the profile table: no validation profile can turn an
//! operator's denial, or a ticket issued for another registration, into a mere warning.

use super::ADMIN_APPROVAL;
use super::ticket::{Binding, StepUpTicket, TicketState};
use crate::registration::{Code, Finding, Severity};

/// The step-up ticket a call presented, as the store has it, in its effective state (a
/// pending ticket past its expiry reads as expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedTicket {
    Unknown(String),
    Found(Box<StepUpTicket>),
}

/// What a presented ticket contributes to a decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redemption {
    /// The ticket's challenges, when an operator approved it for this very registration.
    pub completed: Vec<String>,
    /// The approved ticket that gives them: an APPROVE redeems one of its uses.
    pub redeems: Option<String>,
    /// Why the ticket denies: unknown, issued for another registration, denied, expired.
    pub refusal: Option<Finding>,
    /// The ticket, while it is still pending: a STEP_UP keeps pointing at it.
    pub pending: Option<StepUpTicket>,
}

/// Redeems `ticket` for the registration with `fingerprint` in `tenant`, whose normalized
/// metadata (and CIMD document) `binding` describes. An approved ticket counts only for
/// exactly what the operator saw — the same metadata byte for byte, the same document — and
/// only while it has uses left.
pub fn redeem(
    ticket: Option<&PresentedTicket>,
    tenant: &str,
    fingerprint: &str,
    binding: &Binding,
) -> Redemption {
    let refused = |code: Code, message: String| Redemption {
        refusal: Some(Finding {
            code,
            severity: Severity::Error,
            field: "step_up.ticket_id".to_owned(),
            message,
        }),
        ..Redemption::default()
    };
    let ticket = match ticket {
        None => return Redemption::default(),
        Some(PresentedTicket::Unknown(ticket_id)) => {
            return refused(
                Code::StepUpTicketUnknown,
                format!("there is no step-up ticket `{ticket_id}`"),
            );
        }
        Some(PresentedTicket::Found(ticket)) => ticket,
    };
    if ticket.fingerprint != fingerprint || ticket.tenant != tenant {
        return refused(
            Code::StepUpTicketMismatch,
            format!(
                "step-up ticket `{}` was issued for another registration; it cannot approve this one",
                ticket.ticket_id
            ),
        );
    }
    if let Some(difference) = difference(ticket, binding) {
        return refused(
            Code::StepUpTicketMismatch,
            format!(
                "step-up ticket `{}` was issued for a registration that differs from this one: {difference}",
                ticket.ticket_id
            ),
        );
    }
    match ticket.state {
        TicketState::Approved if !ticket.has_uses_left() => refused(
            Code::StepUpTicketUsed,
            format!(
                "step-up ticket `{}` was already redeemed by decision `{}`",
                ticket.ticket_id,
                ticket
                    .redemptions
                    .last()
                    .map_or("", |redemption| redemption.decision_id.as_str())
            ),
        ),
        TicketState::Approved => Redemption {
            completed: ticket.challenges.clone(),
            redeems: Some(ticket.ticket_id.clone()),
            ..Redemption::default()
        },
        TicketState::Pending => Redemption {
            pending: Some((**ticket).clone()),
            ..Redemption::default()
        },
        TicketState::Denied => {
            let note = if ticket.note.is_empty() {
                String::new()
            } else {
                format!(": {}", ticket.note)
            };
            refused(
                Code::StepUpDenied,
                format!("an operator denied this registration{note}"),
            )
        }
        TicketState::Expired => refused(
            Code::StepUpTicketExpired,
            format!(
                "step-up ticket `{}` expired before it was approved",
                ticket.ticket_id
            ),
        ),
    }
}

/// How the registration presenting `ticket` differs from the one it was opened for, in
/// words; `None` when it is the same. A ticket stored before tickets were bound to their
/// metadata differs from everything: nobody recorded what it approved.
fn difference(ticket: &StepUpTicket, binding: &Binding) -> Option<String> {
    let Some(bound) = &ticket.binding else {
        return Some(
            "the ticket predates metadata binding, so what it approved is unknown; \
             evaluate without it to open a new one"
                .to_owned(),
        );
    };
    if bound.metadata_sha256 != binding.metadata_sha256 {
        let members = differing_members(&bound.client_metadata_json, &binding.client_metadata_json);
        return Some(if members.is_empty() {
            "the normalized metadata differs".to_owned()
        } else {
            let mut named: Vec<String> = members
                .iter()
                .take(10)
                .map(|member| format!("`{member}`"))
                .collect();
            if members.len() > 10 {
                named.push(format!("{} more", members.len() - 10));
            }
            format!("the metadata differs in {}", named.join(", "))
        });
    }
    if bound.document_sha256 != binding.document_sha256 {
        return Some(format!(
            "the CIMD document changed since it was approved (sha256 {} then, {} now)",
            bound.document_sha256.as_deref().unwrap_or("none"),
            binding.document_sha256.as_deref().unwrap_or("none")
        ));
    }
    None
}

/// The top-level members whose values differ between two metadata objects (JSON), in
/// name order, each name cut to 64 characters.
fn differing_members(approved: &str, presented: &str) -> Vec<String> {
    let object = |json: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(json).unwrap_or_default()
    };
    let (approved, presented) = (object(approved), object(presented));
    let mut names: Vec<&String> = approved.keys().chain(presented.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| approved.get(*name) != presented.get(*name))
        .map(|name| name.chars().take(64).collect())
        .collect()
}

/// The challenges the authorization server reports completed, kept only when the
/// configuration lets it attest them (`may_attest`); `admin_approval` never is. Each one
/// dropped is a warning.
pub fn accept_attested(reported: &[String], may_attest: &[String]) -> (Vec<String>, Vec<Finding>) {
    let (accepted, refused): (Vec<&String>, Vec<&String>) = reported
        .iter()
        .partition(|challenge| is_attestable(challenge, may_attest));
    let warnings = refused
        .into_iter()
        .map(|challenge| Finding {
            code: Code::ChallengeNotAttestable,
            severity: Severity::Warning,
            field: "step_up.completed_challenges".to_owned(),
            message: format!(
                "challenge `{challenge}` cannot be attested by the authorization server; ignored"
            ),
        })
        .collect();
    (accepted.into_iter().cloned().collect(), warnings)
}

/// Whether the authorization server may attest `challenge` under `may_attest`.
pub fn is_attestable(challenge: &str, may_attest: &[String]) -> bool {
    challenge != ADMIN_APPROVAL && may_attest.iter().any(|kind| kind == challenge)
}
