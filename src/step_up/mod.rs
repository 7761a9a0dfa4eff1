//! Step-up: a registration held back until its challenges are completed. This module owns
//! the concept whole — the ticket and its states, opening one for a STEP_UP, the operator's
//! resolution, redeeming a presented ticket in a later call, the state a ticket is in at a
//! given time, and how long a ticket is kept.
//!
//! Everything here is pure: the store only stores tickets and applies the transitions
//! decided here atomically; the engine only calls these functions. Nothing here touches
//! the store, the clock or the network.
//!
//! - [`ticket`]: [`StepUpTicket`], [`TicketState`], the [`StepUpRef`] an answer carries,
//!   [`hold`] (open a ticket or keep the pending one) and the retention rule.
//! - [`lifecycle`]: pending → approved | denied | expired ([`resolve`], [`expire`],
//!   [`effective_state`], and [`as_of`], which every read of a ticket goes through).
//! - [`redeem`]: what a presented ticket and attested challenges contribute to a decision.

pub mod lifecycle;
pub mod redeem;
pub mod ticket;

#[cfg(test)]
mod tests;

pub use lifecycle::{OperatorResolution, ResolveRefusal, as_of, effective_state, expire, resolve};
pub use redeem::{PresentedTicket, Redemption, accept_attested, redeem};
pub use ticket::{
    Binding, NewTicket, StepUpRef, StepUpTicket, TicketRedemption, TicketState, hold, is_retained,
};

/// The step-up challenge that only an operator can complete: the authorization server can
/// never attest it in `completed_challenges`.
pub const ADMIN_APPROVAL: &str = "admin_approval";

/// How many approvals an approved ticket gives unless configured otherwise
/// (`step_up.ticket_uses`): one.
pub const DEFAULT_TICKET_USES: u32 = 1;

/// The challenge kinds the authorization server may attest unless configured otherwise
/// (`step_up.attested_challenges`).
pub const DEFAULT_ATTESTED_CHALLENGES: &[&str] = &["user_consent"];
