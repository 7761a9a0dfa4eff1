//! The sled store: durability across reopen and the format key. What every backend must do
//! alike is in `tests/store_suite.rs`, run on sled and PostgreSQL.

use super::*;
use crate::vocab::RegistrationType;
use crate::vocab::{Decision, Reason};

pub(super) fn record(ms: u64, tenant: &str, ip: &str, decision: Decision) -> DecisionRecord {
    DecisionRecord {
        decision_id: ulid::Ulid::from_parts(ms, rand_part(ms)).to_string(),
        decided_at_ms: ms,
        tenant: tenant.to_owned(),
        registration_type: RegistrationType::Dcr,
        client_id: None,
        client_name: Some("C".to_owned()),
        software_id: None,
        fingerprint: format!("fp-{}", ms % 3),
        ip: Some(ip.to_owned()),
        user_agent: String::new(),
        decision,
        reasons: vec![Reason {
            policy_id: "p".to_owned(),
            message: "m".to_owned(),
        }],
        findings: Vec::new(),
        error: None,
        error_description: None,
        obligations: Vec::new(),
        step_up: None,
        policy_version: "v1".to_owned(),
        latency_micros: 10,
        client_metadata_json: "{}".to_owned(),
        redeemed_ticket: None,
    }
}

fn rand_part(ms: u64) -> u128 {
    u128::from(ms) * 7919
}

/// Makes `dir` a sled database marked as store format `version`, closed again.
pub(super) fn marked_as_format(dir: &std::path::Path, version: &str) {
    {
        let db = sled::open(dir).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format_version", version)
            .unwrap();
        db.flush().unwrap();
    }
    sled_store::wait_until_unlocked(&dir.join("db")).unwrap();
}

/// Closes a store; the directory can be opened again at once.
pub(super) async fn close(store: SledStore) {
    store.close().await.expect("the store closes");
}

#[tokio::test]
async fn recorded_decisions_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let first = record(1_000, "default", "203.0.113.7", Decision::Approve);
    store.record(first.clone(), None, Vec::new()).await.unwrap();
    close(store).await;
    let reopened = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get_decision(&first.decision_id).unwrap(),
        Some(first)
    );
}

#[tokio::test]
async fn a_store_of_an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    marked_as_format(dir.path(), "99");
    let error = SledStore::open(dir.path())
        .err()
        .expect("format 99 is refused");
    let message = error.to_string();
    assert!(message.contains("format version `99`"), "{message}");
    assert!(message.contains("reads version `3`"), "{message}");
}
