//! `StepUpService`: reviewing and resolving step-up tickets.

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};
use tracing::info;

use super::convert;
use super::gate::{self, Gate};
use crate::auth::{Identity, Role};
use crate::engine::Engine;
use crate::errors::ServiceError;
use crate::proto::step_up_service_server::StepUpService;
use crate::proto::{
    GetStepUpRequest, ListStepUpsRequest, ListStepUpsResponse, ResolveStepUpRequest, StepUp,
};
use crate::step_up::{self, OperatorResolution};
use crate::vocab::millis;

pub struct StepUpApi {
    engine: Arc<Engine>,
    gate: Gate,
}

impl StepUpApi {
    pub fn new(engine: Arc<Engine>, gate: Gate) -> StepUpApi {
        StepUpApi { engine, gate }
    }
}

/// The longest `resolver` a resolution may name, in characters.
pub const MAX_RESOLVER_CHARS: usize = 200;
/// The longest `note` a resolution may carry, in characters (F-3: notes are listed with
/// every ticket).
pub const MAX_NOTE_CHARS: usize = 2_000;

/// Who resolves: the authenticated caller, whatever `resolver` claims (a different claim
/// is kept in the note, for display). With no `[auth]` configured, the claim is all there
/// is (the audit trail marks it unauthenticated).
fn resolver_and_note(
    identity: &Identity,
    claimed: &str,
    note: String,
) -> Result<(String, String), ServiceError> {
    let claimed = claimed.trim();
    match identity.name() {
        Some(name) if claimed.is_empty() || claimed == name => Ok((name.to_owned(), note)),
        Some(name) => Ok((
            name.to_owned(),
            format!("(resolver given as `{claimed}`) {note}")
                .trim_end()
                .to_owned(),
        )),
        None if claimed.is_empty() => Err(ServiceError::invalid(
            "resolver",
            "say who resolves the ticket (no [auth] is configured, so the caller is unknown)",
        )),
        None => Ok((claimed.to_owned(), note)),
    }
}

fn now_ms() -> u64 {
    millis(SystemTime::now())
}

#[tonic::async_trait]
impl StepUpService for StepUpApi {
    async fn get_step_up(
        &self,
        request: Request<GetStepUpRequest>,
    ) -> Result<Response<StepUp>, Status> {
        self.gate.admit(&request, Role::Operator)?;
        let ticket_id = request.into_inner().ticket_id;
        if ticket_id.is_empty() {
            return Err(ServiceError::invalid("ticket_id", "must not be empty").into());
        }
        let ticket = self
            .engine
            .store()
            .get_ticket(&ticket_id)
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::NotFound(format!("no step-up ticket `{ticket_id}`")))?;
        Ok(Response::new(convert::step_up_ticket(step_up::as_of(
            ticket,
            now_ms(),
        ))))
    }

    async fn list_step_ups(
        &self,
        request: Request<ListStepUpsRequest>,
    ) -> Result<Response<ListStepUpsResponse>, Status> {
        self.gate.admit(&request, Role::Operator)?;
        let query = convert::ticket_query(request.into_inner())?;
        let page = self
            .engine
            .store()
            .list_tickets(&query, now_ms())
            .map_err(ServiceError::from)?;
        Ok(Response::new(ListStepUpsResponse {
            step_ups: page
                .tickets
                .into_iter()
                .map(convert::step_up_ticket)
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn resolve_step_up(
        &self,
        request: Request<ResolveStepUpRequest>,
    ) -> Result<Response<StepUp>, Status> {
        let identity = self.gate.admit(&request, Role::Operator)?;
        let peer = gate::peer(&request);
        let request = request.into_inner();
        if request.ticket_id.is_empty() {
            return Err(ServiceError::invalid("ticket_id", "must not be empty").into());
        }
        convert::bounded_text("ticket_id", &request.ticket_id, 64)?;
        convert::bounded_text("resolver", &request.resolver, MAX_RESOLVER_CHARS)?;
        convert::bounded_text("note", &request.note, MAX_NOTE_CHARS)?;
        let (resolver, note) = resolver_and_note(&identity, &request.resolver, request.note)?;
        let now = SystemTime::now();
        let resolution = OperatorResolution {
            approve: request.approve,
            resolver: resolver.clone(),
            note,
            now_ms: millis(now),
        };
        // The audit record is durable before the answer; a resolution whose record failed
        // is answered UNAVAILABLE, and repeating it (harmless) records it.
        let actor = match identity.name() {
            Some(name) => name.to_owned(),
            None => format!("{resolver} (unauthenticated)"),
        };
        let resolved = self
            .engine
            .resolve_step_up(&request.ticket_id, resolution, actor, peer)
            .await
            .map_err(ServiceError::from)?;
        let ticket = resolved.map_err(ServiceError::from)?;
        info!(
            ticket_id = %ticket.ticket_id,
            state = ticket.state.as_str(),
            %resolver,
            "step-up resolved"
        );
        Ok(Response::new(convert::step_up_ticket(ticket)))
    }
}
