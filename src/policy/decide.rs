//! The outcome rules of DESIGN.md, applied to one registration:
//!
//! 1. spec errors under the profile deny before any policy runs (the caller's job);
//! 2. a satisfied plain `forbid` denies;
//! 3. a satisfied `@step_up` forbid with a challenge not yet completed steps up, but only
//!    when some `permit` is satisfied and no plain forbid is;
//! 4. a satisfied `permit` and nothing above approves, with the permits' `@obligation`s;
//! 5. no satisfied permit denies (default deny);
//! 6. a policy that errors fails closed: deny, with the error as a finding.

use cedar_policy::{Authorizer, EntityUid, PolicyId, Response};

use super::PolicyBundle;
use super::entities::CedarInputs;
use crate::errors::OAuthErrorCode;
use crate::registration::{Code, Finding, Severity};
use crate::signals::Signals;
use crate::vocab::{Decision, Reason};

/// The reason id of a deny that no policy asked for.
pub const DEFAULT_DENY: &str = "default_deny";

/// What the policies decided.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOutcome {
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    /// Policy evaluation errors, when the decision failed closed.
    pub findings: Vec<Finding>,
    /// The `@error` of the deciding forbid, when it named one.
    pub error: Option<OAuthErrorCode>,
    pub obligations: Vec<String>,
    /// Pending step-up challenges, on `StepUp`.
    pub challenges: Vec<String>,
    /// The Cedar principal, resource and context, when asked for.
    pub explain: Option<serde_json::Value>,
}

impl PolicyOutcome {
    fn deny(reasons: Vec<Reason>) -> PolicyOutcome {
        PolicyOutcome {
            decision: Decision::Deny,
            reasons,
            findings: Vec::new(),
            error: None,
            obligations: Vec::new(),
            challenges: Vec::new(),
            explain: None,
        }
    }
}

impl PolicyBundle {
    /// Decides one registration. Never fails: anything that goes wrong is a deny.
    pub fn decide(&self, signals: &Signals, principal_id: &str, explain: bool) -> PolicyOutcome {
        let imitated = self.imitated_name(signals);
        let inputs = match self.cedar_inputs_imitating(signals, principal_id, imitated) {
            Ok(inputs) => inputs,
            Err(error) => return fail_closed(vec![("request".to_owned(), error.to_string())]),
        };
        let authorizer = Authorizer::new();
        let forbid_response =
            authorizer.is_authorized(&inputs.request, &self.forbids, &inputs.entities);
        let permit_response =
            authorizer.is_authorized(&inputs.request, &self.permits, &inputs.entities);
        let mut outcome = self.apply_rules(signals, &forbid_response, &permit_response);
        if let Some(known) = imitated {
            outcome.findings.push(Finding {
                code: Code::ClientNameConfusable,
                severity: Severity::Warning,
                field: "client_name".to_owned(),
                message: format!(
                    "`{}` reads as `{known}`, a client this tenant knows, once look-alike characters are folded",
                    signals.client_name.as_deref().unwrap_or_default().escape_default()
                ),
            });
        }
        if explain {
            outcome.explain = Some(explain_json(&inputs));
        }
        outcome
    }

    fn apply_rules(
        &self,
        signals: &Signals,
        forbid_response: &Response,
        permit_response: &Response,
    ) -> PolicyOutcome {
        let errors: Vec<(String, String)> = forbid_response
            .diagnostics()
            .errors()
            .chain(permit_response.diagnostics().errors())
            .map(|error| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
                (error.policy_id().to_string(), error.inner().to_string())
            })
            .collect();
        if !errors.is_empty() {
            return fail_closed(errors);
        }
        let satisfied_forbids = self.in_order(forbid_response.diagnostics().reason());
        let satisfied_permits = self.in_order(permit_response.diagnostics().reason());

        let (step_ups, plain_forbids): (Vec<_>, Vec<_>) = satisfied_forbids
            .into_iter()
            .partition(|info| !info.step_up.is_empty());
        if !plain_forbids.is_empty() {
            let mut outcome =
                PolicyOutcome::deny(plain_forbids.iter().map(|i| self.reason(i)).collect());
            outcome.error = plain_forbids.iter().find_map(|info| info.error);
            return outcome;
        }
        let pending_step_ups: Vec<_> = step_ups
            .into_iter()
            .filter(|info| {
                info.step_up
                    .iter()
                    .any(|challenge| !signals.completed_challenges.contains(challenge))
            })
            .collect();
        if satisfied_permits.is_empty() {
            let mut reasons = vec![Reason {
                policy_id: DEFAULT_DENY.to_owned(),
                message: "no policy permits this registration".to_owned(),
            }];
            reasons.extend(pending_step_ups.iter().map(|info| self.reason(info)));
            return PolicyOutcome::deny(reasons);
        }
        if !pending_step_ups.is_empty() {
            let mut challenges: Vec<String> = Vec::new();
            for info in &pending_step_ups {
                for challenge in &info.step_up {
                    if !signals.completed_challenges.contains(challenge)
                        && !challenges.contains(challenge)
                    {
                        challenges.push(challenge.clone());
                    }
                }
            }
            return PolicyOutcome {
                decision: Decision::StepUp,
                reasons: pending_step_ups
                    .iter()
                    .map(|info| self.reason(info))
                    .collect(),
                findings: Vec::new(),
                error: None,
                obligations: Vec::new(),
                challenges,
                explain: None,
            };
        }
        let mut obligations: Vec<String> = Vec::new();
        for info in &satisfied_permits {
            for obligation in &info.obligations {
                if !obligations.contains(obligation) {
                    obligations.push(obligation.clone());
                }
            }
        }
        PolicyOutcome {
            decision: Decision::Approve,
            reasons: satisfied_permits
                .iter()
                .map(|info| self.reason(info))
                .collect(),
            findings: Vec::new(),
            error: None,
            obligations,
            challenges: Vec::new(),
            explain: None,
        }
    }

    /// The annotations of the given policies, in policy-set order.
    fn in_order<'a>(&self, ids: impl Iterator<Item = &'a PolicyId>) -> Vec<&super::PolicyInfo> {
        let mut infos: Vec<&super::PolicyInfo> = ids
            .filter_map(|id| self.infos.get(AsRef::<str>::as_ref(id)))
            .collect();
        infos.sort_by_key(|info| info.order);
        infos
    }

    fn reason(&self, info: &super::PolicyInfo) -> Reason {
        Reason {
            policy_id: info.id.clone(),
            message: info
                .reason
                .clone()
                .unwrap_or_else(|| format!("policy `{}` applies", info.id)),
        }
    }
}

/// Rule 6: any evaluation error denies, with every error as a finding.
fn fail_closed(errors: Vec<(String, String)>) -> PolicyOutcome {
    let findings = errors
        .iter()
        .map(|(policy_id, message)| Finding {
            code: Code::PolicyEvaluationError,
            severity: Severity::Error,
            field: String::new(),
            message: format!("policy `{policy_id}` failed to evaluate: {message}"),
        })
        .collect();
    let reasons = errors
        .into_iter()
        .map(|(policy_id, _)| Reason {
            message: format!("policy `{policy_id}` failed to evaluate; failing closed"),
            policy_id,
        })
        .collect();
    PolicyOutcome {
        findings,
        ..PolicyOutcome::deny(reasons)
    }
}

fn explain_json(inputs: &CedarInputs) -> serde_json::Value {
    let or_error = |result: Result<serde_json::Value, String>| {
        result.unwrap_or_else(|error| serde_json::json!({ "error": error }))
    };
    let entity = |uid: &EntityUid, what: &str| {
        or_error(
            inputs
                .entities
                .get(uid)
                .ok_or_else(|| format!("no {what} entity"))
                .and_then(|entity| entity.to_json_value().map_err(|e| e.to_string())),
        )
    };
    serde_json::json!({
        "principal": entity(&inputs.principal, "principal"),
        "action": inputs.request.action().map(|action| action.to_string()),
        "resource": entity(&inputs.resource, "tenant"),
        "context": or_error(
            inputs
                .request
                .context()
                .ok_or_else(|| "no context".to_owned())
                .and_then(|context| context.to_json_value().map_err(|e| e.to_string()))
        ),
    })
}
