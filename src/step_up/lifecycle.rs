//! The ticket lifecycle as a pure state machine: pending → approved | denied | expired.
//! The store applies these transitions atomically; this module decides them.

use super::ticket::{StepUpTicket, TicketState};

/// An operator's answer to a pending ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorResolution {
    pub approve: bool,
    pub resolver: String,
    pub note: String,
    pub now_ms: u64,
}

/// Why a resolution was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveRefusal {
    #[error("step-up ticket `{0}` expired before it was resolved")]
    Expired(String),
    #[error("step-up ticket `{ticket_id}` is already {state}")]
    AlreadyResolved {
        ticket_id: String,
        state: &'static str,
    },
}

/// The state a ticket is in at `now_ms`: a pending ticket past its expiry is expired.
pub fn effective_state(ticket: &StepUpTicket, now_ms: u64) -> TicketState {
    match ticket.state {
        TicketState::Pending if now_ms >= ticket.expires_at_ms => TicketState::Expired,
        state => state,
    }
}

/// `ticket` as it stands at `now_ms`: a pending ticket past its expiry reads as expired,
/// whether or not the expiry scan has stored that yet. Every read of a ticket goes
/// through this.
pub fn as_of(mut ticket: StepUpTicket, now_ms: u64) -> StepUpTicket {
    ticket.state = effective_state(&ticket, now_ms);
    ticket
}

/// Applies `resolution` to `ticket`. `Ok((ticket, true))` when it changed; repeating the
/// resolution a ticket already has is `Ok((ticket, false))`, harmless.
pub fn resolve(
    mut ticket: StepUpTicket,
    resolution: &OperatorResolution,
) -> Result<(StepUpTicket, bool), ResolveRefusal> {
    let wanted = if resolution.approve {
        TicketState::Approved
    } else {
        TicketState::Denied
    };
    match effective_state(&ticket, resolution.now_ms) {
        TicketState::Pending => {
            ticket.state = wanted;
            ticket.resolved_at_ms = Some(resolution.now_ms);
            ticket.resolver = resolution.resolver.clone();
            ticket.note = resolution.note.clone();
            Ok((ticket, true))
        }
        TicketState::Expired => Err(ResolveRefusal::Expired(ticket.ticket_id)),
        state if state == wanted => Ok((ticket, false)),
        state => Err(ResolveRefusal::AlreadyResolved {
            ticket_id: ticket.ticket_id,
            state: state.as_str(),
        }),
    }
}

/// The ticket as the expiry scan stores it: `Some` for a pending ticket past its expiry,
/// now expired; `None` for any other ticket, which the scan leaves alone.
pub fn expire(ticket: &StepUpTicket, now_ms: u64) -> Option<StepUpTicket> {
    (ticket.state == TicketState::Pending
        && effective_state(ticket, now_ms) == TicketState::Expired)
        .then(|| StepUpTicket {
            state: TicketState::Expired,
            ..ticket.clone()
        })
}
