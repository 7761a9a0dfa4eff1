//! `AdminService`: the decision log, the policy status, reloads and shadow disagreements.

use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Request, Response, Status};

use super::convert;
use super::gate::{self, Gate};
use crate::app::reload::PolicyReloader;
use crate::auth::Role;
use crate::engine::Engine;
use crate::errors::ServiceError;
use crate::proto::admin_service_server::AdminService;
use crate::proto::{
    DecisionRecord, GetDecisionRequest, GetPolicyStatusRequest, ListAdminActionsRequest,
    ListAdminActionsResponse, ListDecisionsRequest, ListDecisionsResponse,
    ListShadowDisagreementsRequest, ListShadowDisagreementsResponse, PolicyStatus,
    ReloadPoliciesRequest, ReloadPoliciesResponse,
};
use crate::registration::Profile;
use crate::store::AdminAction;
use crate::vocab::millis;

pub struct AdminApi {
    engine: Arc<Engine>,
    profile: Profile,
    reloader: Arc<PolicyReloader>,
    gate: Gate,
}

impl AdminApi {
    pub fn new(
        engine: Arc<Engine>,
        profile: Profile,
        reloader: Arc<PolicyReloader>,
        gate: Gate,
    ) -> AdminApi {
        AdminApi {
            engine,
            profile,
            reloader,
            gate,
        }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_decisions(
        &self,
        request: Request<ListDecisionsRequest>,
    ) -> Result<Response<ListDecisionsResponse>, Status> {
        self.gate.admit(&request, Role::Operator)?;
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
        self.gate.admit(&request, Role::Operator)?;
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
        request: Request<GetPolicyStatusRequest>,
    ) -> Result<Response<PolicyStatus>, Status> {
        self.gate.admit(&request, Role::Operator)?;
        let policies = self.engine.policies();
        let status = self.reloader.status();
        Ok(Response::new(PolicyStatus {
            version: policies.version.clone(),
            loaded_at: Some(convert::timestamp(policies.loaded_at)),
            policy_count: policies.policy_count() as u32,
            last_error: status
                .last_errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            profile: self.profile.as_str().to_owned(),
            last_error_at: status.last_error_at.map(convert::timestamp),
            last_errors: status
                .last_errors
                .iter()
                .map(convert::policy_problem)
                .collect(),
            shadow_version: self
                .engine
                .shadow()
                .map(|shadow| shadow.version.clone())
                .unwrap_or_default(),
            shadow_dir: self
                .reloader
                .shadow_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default(),
            warnings: policies
                .warnings
                .iter()
                .map(convert::policy_problem)
                .collect(),
        }))
    }

    async fn reload_policies(
        &self,
        request: Request<ReloadPoliciesRequest>,
    ) -> Result<Response<ReloadPoliciesResponse>, Status> {
        let identity = self.gate.admit(&request, Role::Admin)?;
        let peer = gate::peer(&request);
        let report = self.reloader.reload("AdminService.ReloadPolicies").await;
        let now = SystemTime::now();
        let outcome = if report.loaded {
            format!("loaded {}", report.version)
        } else {
            format!(
                "refused: {}",
                report
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        self.engine
            .store()
            .record_admin_action(AdminAction {
                action_id: ulid::Ulid::from_datetime(now).to_string(),
                at_ms: millis(now),
                actor: identity.name().unwrap_or("unauthenticated").to_owned(),
                action: "reload_policies".to_owned(),
                target: self.reloader.dir().display().to_string(),
                outcome,
                peer,
            })
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(ReloadPoliciesResponse {
            loaded: report.loaded,
            version: report.version,
            policy_count: report.policy_count as u32,
            errors: report.errors.iter().map(convert::policy_problem).collect(),
            shadow_version: report.shadow_version.unwrap_or_default(),
        }))
    }

    async fn list_shadow_disagreements(
        &self,
        request: Request<ListShadowDisagreementsRequest>,
    ) -> Result<Response<ListShadowDisagreementsResponse>, Status> {
        self.gate.admit(&request, Role::Operator)?;
        let request = request.into_inner();
        let page_token = convert::page_token(&request.page_token, "ListShadowDisagreements")?;
        let page = self
            .engine
            .store()
            .list_disagreements(request.page_size as usize, page_token)
            .map_err(ServiceError::from)?;
        Ok(Response::new(ListShadowDisagreementsResponse {
            disagreements: page
                .disagreements
                .into_iter()
                .map(convert::disagreement)
                .collect(),
            next_page_token: page
                .next_page_token
                .map(|token| token.to_string())
                .unwrap_or_default(),
        }))
    }

    async fn list_admin_actions(
        &self,
        request: Request<ListAdminActionsRequest>,
    ) -> Result<Response<ListAdminActionsResponse>, Status> {
        self.gate.admit(&request, Role::Operator)?;
        let request = request.into_inner();
        let page_token = convert::page_token(&request.page_token, "ListAdminActions")?;
        let page = self
            .engine
            .store()
            .list_admin_actions(request.page_size as usize, page_token)
            .map_err(ServiceError::from)?;
        Ok(Response::new(ListAdminActionsResponse {
            actions: page
                .actions
                .into_iter()
                .map(convert::admin_action)
                .collect(),
            next_page_token: page
                .next_page_token
                .map(|token| token.to_string())
                .unwrap_or_default(),
        }))
    }
}
