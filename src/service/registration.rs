//! `RegistrationService`: Evaluate.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::convert;
use super::gate::Gate;
use crate::auth::{Role, require};
use crate::engine::Engine;
use crate::errors::ServiceError;
use crate::proto::registration_service_server::RegistrationService;
use crate::proto::{EvaluateRequest, EvaluateResponse};

pub struct RegistrationApi {
    engine: Arc<Engine>,
    max_metadata_bytes: usize,
    gate: Gate,
}

impl RegistrationApi {
    pub fn new(engine: Arc<Engine>, max_metadata_bytes: usize, gate: Gate) -> RegistrationApi {
        RegistrationApi {
            engine,
            max_metadata_bytes,
            gate,
        }
    }
}

#[tonic::async_trait]
impl RegistrationService for RegistrationApi {
    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let identity = self.gate.admit(&request, Role::Evaluate)?;
        let input = convert::evaluate_input(request.into_inner(), self.max_metadata_bytes)?;
        if input.explain {
            // `explain` shows the tenant's attributes and the whole Cedar context.
            require(&identity, Role::Operator).map_err(ServiceError::from)?;
        }
        let tenant = input.tenant.clone();
        let dry_run = input.dry_run;
        match self.engine.evaluate(input).await {
            Ok(evaluated) => {
                info!(
                    decision_id = evaluated.decision_id.as_deref().unwrap_or("dry-run"),
                    %tenant,
                    decision = ?evaluated.decision,
                    error = evaluated.error.as_ref().map(|(code, _)| code.as_str()),
                    findings = evaluated.findings.len(),
                    policy_version = %evaluated.policy_version,
                    dry_run,
                    "decided"
                );
                Ok(Response::new(convert::evaluate_response(evaluated)))
            }
            Err(error) => {
                warn!(%tenant, %error, "evaluate failed");
                Err(error.into())
            }
        }
    }
}
