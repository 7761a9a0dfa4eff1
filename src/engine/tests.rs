//! The engine with a real store: what a decision leaves behind.
use std::path::Path;

use super::*;
use crate::policy::load_policy_dir;
use crate::store::SledStore;

fn input(metadata_json: &str) -> EvaluateInput {
    EvaluateInput {
        tenant: "acme".to_owned(),
        registration: Registration::Dcr {
            metadata_json: metadata_json.to_owned(),
            initial_access_token: false,
        },
        caller: Caller {
            ip: Some("203.0.113.7".parse().unwrap()),
            ..Caller::default()
        },
        step_up_ticket: String::new(),
        completed_challenges: Vec::new(),
        dry_run: false,
        explain: false,
    }
}

#[tokio::test]
async fn a_step_up_records_a_pending_ticket_with_its_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let policies =
        load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let mut config = crate::config::Config::default();
    config.step_up.ticket_ttl = Duration::from_secs(600);
    let engine = crate::service::build_engine(&config, policies, store.clone()).unwrap();
    let evaluated = engine
        .evaluate(input(
            r#"{"client_uri":"https://app.example.com","redirect_uris":["https://cb.example.net/cb"]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(evaluated.decision, Decision::StepUp);
    let step_up = evaluated.step_up.expect("a step-up names its ticket");
    let ticket = store
        .get_ticket(&step_up.ticket_id)
        .unwrap()
        .expect("the ticket is stored");
    assert_eq!(ticket.state, TicketState::Pending);
    assert_eq!(ticket.challenges, vec![ADMIN_APPROVAL]);
    assert_eq!(ticket.tenant, "acme");
    assert_eq!(ticket.fingerprint, evaluated.fingerprint);
    assert_eq!(Some(ticket.decision_id.clone()), evaluated.decision_id);
    assert_eq!(ticket.expires_at_ms - ticket.created_at_ms, 600_000);

    let record = store
        .get_decision(&ticket.decision_id)
        .unwrap()
        .expect("recorded");
    assert_eq!(record.step_up.map(|s| s.ticket_id), Some(step_up.ticket_id));
    assert_eq!(record.ip.as_deref(), Some("203.0.113.7"));
}
