//! `AdminService`: the decision log and the policy status.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::engine::Engine;
use crate::errors::ServiceError;
use crate::proto::admin_service_server::AdminService;
use crate::proto::{
    DecisionRecord, GetDecisionRequest, GetPolicyStatusRequest, ListDecisionsRequest,
    ListDecisionsResponse, PolicyStatus,
};
use crate::registration::Profile;

pub struct AdminApi {
    engine: Arc<Engine>,
    profile: Profile,
}

impl AdminApi {
    pub fn new(engine: Arc<Engine>, profile: Profile) -> AdminApi {
        AdminApi { engine, profile }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_decisions(
        &self,
        request: Request<ListDecisionsRequest>,
    ) -> Result<Response<ListDecisionsResponse>, Status> {
        let query = convert::decision_query(request.into_inner())?;
        let page = self
            .engine
            .store()
            .list_decisions(&query)
            .map_err(ServiceError::from)?;
        Ok(Response::new(ListDecisionsResponse {
            decisions: page
                .decisions
                .into_iter()
                .map(convert::decision_record)
                .collect(),
            next_page_token: page
                .next_page_token
                .map(|token| token.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn get_decision(
        &self,
        request: Request<GetDecisionRequest>,
    ) -> Result<Response<DecisionRecord>, Status> {
        let decision_id = request.into_inner().decision_id;
        if ulid::Ulid::from_string(&decision_id).is_err() {
            return Err(ServiceError::invalid(
                "decision_id",
                format!("`{}` is not a decision id", decision_id.escape_default()),
            )
            .into());
        }
        let record = self
            .engine
            .store()
            .get_decision(&decision_id)
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::NotFound(format!("no decision `{decision_id}`")))?;
        Ok(Response::new(convert::decision_record(record)))
    }

    async fn get_policy_status(
        &self,
        _request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        let policies = self.engine.policies();
        Ok(Response::new(PolicyStatus {
            version: policies.version.clone(),
            loaded_at: Some(convert::timestamp(policies.loaded_at)),
            policy_count: policies.policy_count() as u32,
            last_error: String::new(),
            profile: self.profile.as_str().to_owned(),
        }))
    }
}
