//! The step-up ticket lifecycle as a pure state machine: pending → approved | denied |
//! expired. The store applies these transitions atomically; this module decides them.

use crate::store::{StepUpTicket, TicketState};

/// An operator's answer to a pending ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
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

/// Applies `resolution` to `ticket`. `Ok((ticket, true))` when it changed; repeating the
/// resolution a ticket already has is `Ok((ticket, false))`, harmless.
pub fn resolve(
    mut ticket: StepUpTicket,
    resolution: &Resolution,
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
            state: state_name(state),
        }),
    }
}

pub fn state_name(state: TicketState) -> &'static str {
    match state {
        TicketState::Pending => "pending",
        TicketState::Approved => "approved",
        TicketState::Denied => "denied",
        TicketState::Expired => "expired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> StepUpTicket {
        StepUpTicket {
            ticket_id: "T".to_owned(),
            tenant: "default".to_owned(),
            state: TicketState::Pending,
            challenges: vec!["admin_approval".to_owned()],
            fingerprint: "fp".to_owned(),
            decision_id: "D".to_owned(),
            created_at_ms: 1_000,
            expires_at_ms: 2_000,
            resolved_at_ms: None,
            resolver: String::new(),
            note: String::new(),
            client_id: None,
            client_name: None,
        }
    }

    fn answer(approve: bool, now_ms: u64) -> Resolution {
        Resolution {
            approve,
            resolver: "ops@example.com".to_owned(),
            note: "checked".to_owned(),
            now_ms,
        }
    }

    #[test]
    fn a_pending_ticket_is_approved_with_who_and_when() {
        let (approved, changed) = resolve(ticket(), &answer(true, 1_500)).unwrap();
        assert!(changed);
        assert_eq!(approved.state, TicketState::Approved);
        assert_eq!(approved.resolved_at_ms, Some(1_500));
        assert_eq!(approved.resolver, "ops@example.com");
    }

    #[test]
    fn repeating_the_same_resolution_is_harmless() {
        let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
        let (again, changed) = resolve(approved.clone(), &answer(true, 1_600)).unwrap();
        assert!(!changed);
        assert_eq!(again, approved, "the first resolution stands");
    }

    #[test]
    fn a_different_resolution_is_refused() {
        let (denied, _) = resolve(ticket(), &answer(false, 1_500)).unwrap();
        assert_eq!(
            resolve(denied, &answer(true, 1_600)),
            Err(ResolveRefusal::AlreadyResolved {
                ticket_id: "T".to_owned(),
                state: "denied"
            })
        );
    }

    #[test]
    fn an_expired_ticket_cannot_be_resolved() {
        assert_eq!(
            resolve(ticket(), &answer(true, 2_000)),
            Err(ResolveRefusal::Expired("T".to_owned()))
        );
        assert_eq!(effective_state(&ticket(), 1_999), TicketState::Pending);
        assert_eq!(effective_state(&ticket(), 2_000), TicketState::Expired);
    }
}
