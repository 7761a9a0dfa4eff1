//! The pure pipeline: deciding is a function of the prepared registration, what was
//! observed, the clock and the minted ids — nothing else.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::test_input as input;
use super::*;
use crate::policy::load_policy_dir;
use crate::step_up::{ADMIN_APPROVAL, TicketState};
use crate::store::RateDimension;

fn settings() -> EngineSettings {
    test_settings()
}

fn starter() -> PolicyBundle {
    load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

/// Stepped up by the starter pack: its redirect URI is on another domain than `client_uri`.
const CROSS_DOMAIN: &str =
    r#"{"client_uri":"https://app.example.com","redirect_uris":["https://cb.example.net/cb"]}"#;

fn stamp() -> Stamp {
    Stamp {
        now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        decision_id: "D1".to_owned(),
        ticket_id: "T1".to_owned(),
    }
}

fn observed(prepared: &Prepared, input: &EvaluateInput) -> Observed {
    Observed {
        ticket: None,
        rates: prepared
            .rate_keys(input)
            .into_iter()
            .map(|key| (key, vec![0, 0, 0]))
            .collect(),
        duplicates: None,
    }
}

#[test]
fn a_step_up_opens_a_ticket_with_the_minted_ids_and_the_configured_ttl() {
    let (policies, settings, input) = (starter(), settings(), input(CROSS_DOMAIN));
    let prepared = prepare_dcr(&settings, CROSS_DOMAIN, false, stamp().now);
    let decided = decide(
        &policies,
        &settings,
        &input,
        &prepared,
        &observed(&prepared, &input),
        &stamp(),
    );
    assert_eq!(decided.answer.decision, Decision::StepUp);
    assert_eq!(
        decided.answer.decision_id, None,
        "only recording gives an id"
    );
    let opened = decided.draft.opens.expect("a STEP_UP opens a ticket");
    assert_eq!(opened.ticket_id, "T1");
    assert_eq!(opened.decision_id, "D1");
    assert_eq!(opened.state, TicketState::Pending);
    assert_eq!(opened.challenges, vec![ADMIN_APPROVAL]);
    assert_eq!(opened.tenant, "acme");
    assert_eq!(opened.expires_at_ms - opened.created_at_ms, 600_000);
    assert_eq!(
        decided.answer.step_up.map(|step_up| step_up.ticket_id),
        Some("T1".to_owned())
    );
}

#[test]
fn deciding_twice_with_the_same_inputs_gives_the_same_decision() {
    let (policies, settings, input) = (starter(), settings(), input(CROSS_DOMAIN));
    let prepared = prepare_dcr(&settings, CROSS_DOMAIN, false, stamp().now);
    let observed = observed(&prepared, &input);
    let first = decide(&policies, &settings, &input, &prepared, &observed, &stamp());
    let second = decide(&policies, &settings, &input, &prepared, &observed, &stamp());
    assert_eq!(first, second);
}

#[test]
fn a_presented_pending_ticket_is_kept_and_nothing_new_is_opened() {
    let (policies, settings, mut input) = (starter(), settings(), input(CROSS_DOMAIN));
    let prepared = prepare_dcr(&settings, CROSS_DOMAIN, false, stamp().now);
    let first = decide(
        &policies,
        &settings,
        &input,
        &prepared,
        &observed(&prepared, &input),
        &stamp(),
    );
    let pending = first.draft.opens.unwrap();
    input.step_up_ticket = pending.ticket_id.clone();
    let again = Observed {
        ticket: Some(crate::step_up::PresentedTicket::Found(Box::new(
            pending.clone(),
        ))),
        ..observed(&prepared, &input)
    };
    let later = Stamp {
        ticket_id: "T2".to_owned(),
        ..stamp()
    };
    let second = decide(&policies, &settings, &input, &prepared, &again, &later);
    assert_eq!(second.answer.decision, Decision::StepUp);
    assert_eq!(second.draft.opens, None);
    assert_eq!(second.answer.step_up.unwrap().ticket_id, pending.ticket_id);
}

#[test]
fn every_rate_counter_observed_reaches_the_policies_under_its_dimension() {
    let (policies, settings, mut input) = (starter(), settings(), input(CROSS_DOMAIN));
    input.explain = true;
    let prepared = prepare_dcr(&settings, CROSS_DOMAIN, false, stamp().now);
    let keys = prepared.rate_keys(&input);
    let dimensions: Vec<RateDimension> = keys.iter().map(|key| key.dimension).collect();
    assert_eq!(
        dimensions,
        [
            RateDimension::Ip,
            RateDimension::Domain,
            RateDimension::Tenant,
            RateDimension::Fingerprint
        ]
    );
    let observed = Observed {
        rates: keys.into_iter().map(|key| (key, vec![7, 9, 11])).collect(),
        ..Observed::default()
    };
    let decided = decide(&policies, &settings, &input, &prepared, &observed, &stamp());
    let explain: serde_json::Value =
        serde_json::from_str(decided.answer.explain_json.as_deref().unwrap()).unwrap();
    let text = explain.to_string();
    assert!(
        text.contains(r#""1m":7"#) && text.contains(r#""1h":9"#) && text.contains(r#""24h":11"#),
        "the observed counts are in the context: {text}"
    );
}
