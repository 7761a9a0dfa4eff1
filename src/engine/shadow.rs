//! Shadow rollout: comparing what the live and the candidate policies decided.

use super::Evaluated;
use crate::store::{DecisionRecord, Disagreement, ShadowOutcome};

/// The disagreement between the live and the candidate outcome of the call `recorded`, if
/// they differ in decision, obligations or step-up challenges. Deciding policies alone
/// differing is not a disagreement: the registration is treated the same.
pub fn compare(
    live: &Evaluated,
    candidate: &Evaluated,
    recorded: &DecisionRecord,
) -> Option<Disagreement> {
    let live = outcome(live);
    let candidate_outcome = outcome(candidate);
    let same = live.decision == candidate_outcome.decision
        && sorted(&live.obligations) == sorted(&candidate_outcome.obligations)
        && sorted(&live.challenges) == sorted(&candidate_outcome.challenges);
    (!same).then(|| Disagreement {
        decision_id: recorded.decision_id.clone(),
        decided_at_ms: recorded.decided_at_ms,
        tenant: recorded.tenant.clone(),
        client_id: recorded.client_id.clone(),
        client_name: recorded.client_name.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step_up::StepUpRef;
    use crate::vocab::RegistrationType;
    use crate::vocab::{Decision, Reason};

    fn evaluated(decision: Decision, policy: &str, obligations: &[&str]) -> Evaluated {
        Evaluated {
            decision_id: None,
            decision,
            reasons: vec![Reason {
                policy_id: policy.to_owned(),
                message: String::new(),
            }],
            findings: Vec::new(),
            error: None,
            step_up: None,
            obligations: obligations.iter().map(|o| o.to_string()).collect(),
            client_metadata_json: "{}".to_owned(),
            policy_version: policy.to_owned(),
            fingerprint: String::new(),
            explain_json: None,
            cimd: None,
            duplicate_of: None,
        }
    }

    fn recorded(tenant: &str) -> DecisionRecord {
        DecisionRecord {
            decision_id: "01".to_owned(),
            decided_at_ms: 1,
            tenant: tenant.to_owned(),
            registration_type: RegistrationType::Dcr,
            client_id: None,
            client_name: Some("C".to_owned()),
            software_id: None,
            fingerprint: String::new(),
            ip: None,
            user_agent: String::new(),
            decision: Decision::Approve,
            reasons: Vec::new(),
            findings: Vec::new(),
            error: None,
            error_description: None,
            obligations: Vec::new(),
            step_up: None,
            redeemed_ticket: None,
            policy_version: String::new(),
            latency_micros: 0,
            client_metadata_json: "{}".to_owned(),
        }
    }

    #[test]
    fn other_deciding_policies_with_the_same_outcome_are_no_disagreement() {
        let live = evaluated(Decision::Approve, "a", &["require_consent"]);
        let candidate = evaluated(Decision::Approve, "b", &["require_consent"]);
        assert_eq!(compare(&live, &candidate, &recorded("default")), None);
    }

    #[test]
    fn a_different_decision_obligation_or_challenge_is_recorded_with_both_sides() {
        let live = evaluated(Decision::Approve, "a", &[]);
        let denied = compare(&live, &evaluated(Decision::Deny, "b", &[]), &recorded("t"))
            .expect("approve vs deny");
        assert_eq!(denied.live.policies, ["a"]);
        assert_eq!(denied.candidate.policies, ["b"]);
        assert_eq!(denied.candidate.version, "b");
        assert_eq!(denied.tenant, "t");
        assert_eq!(denied.client_name.as_deref(), Some("C"));

        let consent = evaluated(Decision::Approve, "a", &["require_consent"]);
        assert!(compare(&live, &consent, &recorded("t")).is_some());

        let mut stepped = evaluated(Decision::StepUp, "a", &[]);
        stepped.step_up = Some(StepUpRef {
            ticket_id: "T".to_owned(),
            challenges: vec!["admin_approval".to_owned()],
            expires_at_ms: 0,
        });
        let mut other = stepped.clone();
        other.step_up.as_mut().unwrap().challenges = vec!["user_consent".to_owned()];
        let differs = compare(&stepped, &other, &recorded("t")).expect("other challenges");
        assert_eq!(differs.live.challenges, ["admin_approval"]);
        assert_eq!(differs.candidate.challenges, ["user_consent"]);
    }
}
