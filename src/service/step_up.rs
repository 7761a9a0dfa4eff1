//! `StepUpService`: reviewing and resolving step-up tickets.

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};
use tracing::info;

use super::convert;
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
}

impl StepUpApi {
    pub fn new(engine: Arc<Engine>) -> StepUpApi {
        StepUpApi { engine }
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
        let request = request.into_inner();
        if request.ticket_id.is_empty() {
            return Err(ServiceError::invalid("ticket_id", "must not be empty").into());
        }
        if request.resolver.trim().is_empty() {
            return Err(ServiceError::invalid("resolver", "say who resolves the ticket").into());
        }
        let resolution = OperatorResolution {
            approve: request.approve,
            resolver: request.resolver.clone(),
            note: request.note,
            now_ms: now_ms(),
        };
        let ticket = self
            .engine
            .store()
            .resolve_ticket(&request.ticket_id, resolution)
            .await
            .map_err(ServiceError::from)?
            .map_err(ServiceError::from)?;
        info!(
            ticket_id = %ticket.ticket_id,
            state = ticket.state.as_str(),
            resolver = %request.resolver,
            "step-up resolved"
        );
        Ok(Response::new(convert::step_up_ticket(ticket)))
    }
}
