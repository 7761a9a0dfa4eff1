//! The sled store: durability across reopen, group commit, listing and the format key.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::step_up::TicketState;
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

fn ids(page: &DecisionPage) -> Vec<u64> {
    page.decisions.iter().map(|d| d.decided_at_ms).collect()
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
async fn concurrent_records_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let writers: Vec<_> = (0..200u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record(
                        record(10_000 + n, "default", "203.0.113.7", Decision::Deny),
                        None,
                        Vec::new(),
                    )
                    .await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.decisions_recorded, 200);
    assert!(
        stats.flushes < 200,
        "200 concurrent records took {} flushes; group commit should share them",
        stats.flushes
    );
}

#[tokio::test]
async fn listing_filters_pages_and_orders_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    for ms in 1..=30u64 {
        let tenant = if ms % 2 == 0 { "even" } else { "odd" };
        let ip = if ms % 5 == 0 {
            "2001:db8::5"
        } else {
            "198.51.100.1"
        };
        let decision = if ms % 3 == 0 {
            Decision::Deny
        } else {
            Decision::Approve
        };
        store
            .record(record(ms, tenant, ip, decision), None, Vec::new())
            .await
            .unwrap();
    }
    let query = |change: &dyn Fn(&mut DecisionQuery)| {
        let mut query = DecisionQuery {
            page_size: 100,
            ..DecisionQuery::default()
        };
        change(&mut query);
        store.list_decisions(&query).unwrap()
    };
    assert_eq!(ids(&query(&|_| {})), (1..=30).rev().collect::<Vec<_>>());
    assert_eq!(
        ids(&query(&|q| q.ip = Some("2001:db8::5".to_owned()))),
        vec![30, 25, 20, 15, 10, 5]
    );
    assert_eq!(
        ids(&query(&|q| {
            q.tenant = Some("even".to_owned());
            q.decision = Some(Decision::Deny);
        })),
        vec![30, 24, 18, 12, 6]
    );
    assert_eq!(
        ids(&query(&|q| {
            q.since_ms = Some(10);
            q.until_ms = Some(14);
        })),
        vec![13, 12, 11, 10]
    );
    assert_eq!(
        ids(&query(&|q| q.fingerprint = Some("fp-0".to_owned()))),
        vec![30, 27, 24, 21, 18, 15, 12, 9, 6, 3]
    );

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_decisions(&DecisionQuery {
                tenant: Some("odd".to_owned()),
                page_size: 4,
                page_token: token,
                ..DecisionQuery::default()
            })
            .unwrap();
        assert!(page.decisions.len() <= 4);
        seen.extend(ids(&page));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=30).rev().filter(|ms| ms % 2 == 1).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_step_up_ticket_is_written_with_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let decision = record(5_000, "default", "203.0.113.7", Decision::StepUp);
    let ticket = StepUpTicket {
        ticket_id: "01TICKET".to_owned(),
        tenant: "default".to_owned(),
        state: TicketState::Pending,
        challenges: vec!["admin_approval".to_owned()],
        fingerprint: decision.fingerprint.clone(),
        decision_id: decision.decision_id.clone(),
        created_at_ms: 5_000,
        expires_at_ms: 9_000,
        resolved_at_ms: None,
        resolver: String::new(),
        note: String::new(),
        client_id: None,
        client_name: Some("C".to_owned()),
        binding: None,
        reasons: Vec::new(),
        findings: Vec::new(),
        max_uses: 1,
        redemptions: Vec::new(),
    };
    store
        .record(decision, Some(ticket.clone()), Vec::new())
        .await
        .unwrap();
    assert_eq!(store.get_ticket("01TICKET").unwrap(), Some(ticket));
}

#[tokio::test]
async fn two_simultaneous_redemptions_of_a_single_use_ticket_record_one_approval() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let opening = record(5_000, "default", "203.0.113.7", Decision::StepUp);
    let ticket = StepUpTicket {
        ticket_id: "01TICKET".to_owned(),
        tenant: "default".to_owned(),
        state: TicketState::Pending,
        challenges: vec!["admin_approval".to_owned()],
        fingerprint: opening.fingerprint.clone(),
        decision_id: opening.decision_id.clone(),
        created_at_ms: 5_000,
        expires_at_ms: 9_000,
        resolved_at_ms: None,
        resolver: String::new(),
        note: String::new(),
        client_id: None,
        client_name: Some("C".to_owned()),
        binding: None,
        reasons: Vec::new(),
        findings: Vec::new(),
        max_uses: 1,
        redemptions: Vec::new(),
    };
    store
        .record(opening, Some(ticket), Vec::new())
        .await
        .unwrap();
    store
        .resolve_ticket(
            "01TICKET",
            crate::step_up::OperatorResolution {
                approve: true,
                resolver: "ops".to_owned(),
                note: String::new(),
                now_ms: 6_000,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let redeeming = |ms: u64| {
        let store = store.clone();
        tokio::spawn(async move {
            let decision = DecisionRecord {
                redeemed_ticket: Some("01TICKET".to_owned()),
                ..record(ms, "default", "203.0.113.7", Decision::Approve)
            };
            let id = decision.decision_id.clone();
            (id, store.record(decision, None, Vec::new()).await)
        })
    };
    let (first, second) = (redeeming(7_000), redeeming(7_001));
    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    let recorded: Vec<&String> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(recorded.len(), 1, "exactly one approval: {outcomes:?}");
    let spent = outcomes
        .iter()
        .find(|(_, outcome)| outcome.is_err())
        .unwrap();
    assert!(
        matches!(&spent.1, Err(StoreError::TicketSpent { ticket_id }) if ticket_id == "01TICKET"),
        "{spent:?}"
    );
    assert_eq!(
        store.get_decision(&spent.0).unwrap(),
        None,
        "the refused redemption wrote nothing"
    );
    let ticket = store.get_ticket("01TICKET").unwrap().unwrap();
    assert_eq!(ticket.redemptions.len(), 1);
    assert_eq!(&ticket.redemptions[0].decision_id, recorded[0]);
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

fn counted(ms: u64, ip: &str) -> (DecisionRecord, Vec<RateKey>) {
    let keys = vec![RateKey {
        dimension: RateDimension::Ip,
        value: ip.to_owned(),
    }];
    (record(ms, "default", ip, Decision::Deny), keys)
}

#[tokio::test]
async fn rate_windows_slide_over_minute_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let minute = 60_000;
    let base = 1_000 * minute;
    // Two registrations in minute 1000, one in minute 1059, one in minute 1060.
    for ms in [
        base + 1,
        base + 59_999,
        base + 59 * minute + 5,
        base + 60 * minute,
    ] {
        let (decision, keys) = counted(ms, "203.0.113.7");
        store.record(decision, None, keys).await.unwrap();
    }
    let windows = [Duration::from_secs(60), Duration::from_secs(3600)];
    let key = [RateKey {
        dimension: RateDimension::Ip,
        value: "203.0.113.7".to_owned(),
    }];
    let at = |ms: u64| store.rate_counts(&key, &windows, ms).unwrap()[0].clone();
    assert_eq!(at(base + 30_000), vec![2, 2], "inside the first minute");
    assert_eq!(
        at(base + minute),
        vec![2, 2],
        "a burst is still counted at the turn of the minute"
    );
    assert_eq!(
        at(base + minute + 45_000),
        vec![1, 2],
        "a quarter of minute 1000 is still inside the 1m window: half a registration, rounded up"
    );
    assert_eq!(
        at(base + 2 * minute),
        vec![0, 2],
        "the 1m window has left minute 1000"
    );
    assert_eq!(
        at(base + 59 * minute),
        vec![1, 3],
        "the hour still holds minute 1000"
    );
    assert_eq!(
        at(base + 60 * minute),
        vec![2, 4],
        "exactly an hour on, minute 1000 is still inside the hour"
    );
    assert_eq!(
        at(base + 61 * minute),
        vec![1, 2],
        "minute 1000 left the hour"
    );
    let other = [RateKey {
        dimension: RateDimension::Ip,
        value: "203.0.113.70".to_owned(),
    }];
    assert_eq!(
        store.rate_counts(&other, &windows, base).unwrap()[0],
        vec![0, 0],
        "keys do not bleed into each other"
    );
}

#[tokio::test]
async fn approvals_are_counted_per_fingerprint_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let first = record(1_000, "default", "203.0.113.7", Decision::Approve);
    let denied = DecisionRecord {
        fingerprint: first.fingerprint.clone(),
        ..record(1_001, "default", "203.0.113.7", Decision::Deny)
    };
    let second = DecisionRecord {
        fingerprint: first.fingerprint.clone(),
        ..record(1_002, "default", "203.0.113.7", Decision::Approve)
    };
    for decision in [first.clone(), denied, second] {
        store.record(decision, None, Vec::new()).await.unwrap();
    }
    let stats = store
        .fingerprint_stats(&first.fingerprint)
        .unwrap()
        .unwrap();
    assert_eq!(stats.approved, 2, "only approvals count");
    assert_eq!(stats.first_decision_id, first.decision_id);
    assert_eq!(stats.first_seen_ms, 1_000);
}

fn disagreement(ms: u64) -> Disagreement {
    let side = |decision| ShadowOutcome {
        decision,
        policies: vec!["p".to_owned()],
        obligations: Vec::new(),
        challenges: Vec::new(),
        version: "v".to_owned(),
    };
    Disagreement {
        decision_id: ulid::Ulid::from_parts(ms, rand_part(ms)).to_string(),
        decided_at_ms: ms,
        tenant: "default".to_owned(),
        client_id: None,
        client_name: Some("C".to_owned()),
        live: side(Decision::Approve),
        candidate: side(Decision::Deny),
    }
}

#[tokio::test]
async fn shadow_disagreements_are_listed_newest_first_in_pages_and_pruned_with_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    for ms in [1_000, 2_000, 3_000] {
        store.record_disagreement(&disagreement(ms)).unwrap();
    }
    let first = store.list_disagreements(2, None).unwrap();
    let times: Vec<u64> = first
        .disagreements
        .iter()
        .map(|d| d.decided_at_ms)
        .collect();
    assert_eq!(times, [3_000, 2_000]);
    let rest = store.list_disagreements(2, first.next_page_token).unwrap();
    assert_eq!(rest.disagreements, [disagreement(1_000)]);
    assert_eq!(rest.next_page_token, None);

    store
        .prune(PruneCutoffs {
            decisions_ms: 2_500,
            tickets_ms: 0,
            rates_ms: 0,
            cimd_cache_ms: 0,
        })
        .unwrap();
    let kept = store.list_disagreements(0, None).unwrap();
    assert_eq!(kept.disagreements, [disagreement(3_000)]);
}

#[tokio::test]
async fn a_page_of_large_records_ends_at_its_byte_budget_with_a_token_for_the_rest() {
    use crate::store::sled_store::PAGE_BYTE_BUDGET;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let large = "x".repeat(200 * 1024);
    for ms in 1..=20 {
        let decision = DecisionRecord {
            client_metadata_json: format!("{{\"client_name\":\"{large}\"}}"),
            ..record(ms, "default", "203.0.113.7", Decision::Deny)
        };
        store.record(decision, None, Vec::new()).await.unwrap();
    }
    let mut seen = 0;
    let mut pages = 0;
    let mut token = None;
    loop {
        let page = store
            .list_decisions(&DecisionQuery {
                page_size: 1000,
                page_token: token,
                ..DecisionQuery::default()
            })
            .unwrap();
        let bytes: usize = page
            .decisions
            .iter()
            .map(|d| d.client_metadata_json.len())
            .sum();
        assert!(bytes <= PAGE_BYTE_BUDGET, "a page of {bytes} bytes");
        assert!(!page.decisions.is_empty());
        seen += page.decisions.len();
        pages += 1;
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 20, "paging still reaches every record");
    assert!(pages >= 4, "{pages} pages");
}
