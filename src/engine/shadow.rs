//! Shadow rollout: comparing what the live and the candidate policies decided.

use super::Evaluated;
use crate::store::{Disagreement, ShadowOutcome};

/// The disagreement between the live and the candidate outcome of one recorded call, if
/// they differ in decision, obligations or step-up challenges. Deciding policies alone
/// differing is not a disagreement: the registration is treated the same.
pub fn compare(
    live: &Evaluated,
    candidate: &Evaluated,
    decision_id: &str,
    decided_at_ms: u64,
    tenant: &str,
) -> Option<Disagreement> {
    let live = outcome(live);
    let candidate_outcome = outcome(candidate);
    let same = live.decision == candidate_outcome.decision
        && sorted(&live.obligations) == sorted(&candidate_outcome.obligations)
        && sorted(&live.challenges) == sorted(&candidate_outcome.challenges);
    (!same).then(|| Disagreement {
        decision_id: decision_id.to_owned(),
        decided_at_ms,
        tenant: tenant.to_owned(),
        client_id: candidate.client_id.clone(),
        client_name: candidate.client_name.clone(),
        live,
        candidate: candidate_outcome,
    })
}

fn outcome(evaluated: &Evaluated) -> ShadowOutcome {
    ShadowOutcome {
        decision: evaluated.decision,
        policies: evaluated
            .reasons
            .iter()
            .map(|reason| reason.policy_id.clone())
            .collect(),
        obligations: evaluated.obligations.clone(),
        challenges: evaluated
            .step_up
            .as_ref()
            .map(|step_up| step_up.challenges.clone())
            .unwrap_or_default(),
        version: evaluated.policy_version.clone(),
    }
}

fn sorted(items: &[String]) -> Vec<&String> {
    let mut items: Vec<&String> = items.iter().collect();
    items.sort();
    items
}
