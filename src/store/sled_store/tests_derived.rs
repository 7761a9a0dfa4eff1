//! One record per decision: what is derived from it (indexes, rate counters, fingerprint
//! statistics) survives a restart and a crash, and the size budget sheds only repeated
//! denials of malformed registrations.

use super::*;
use crate::errors::OAuthErrorCode;
use crate::store::RateDimension;
use crate::store::tests::{close, record};
use crate::vocab::Decision;

fn keys(ip: &str, fingerprint: &str) -> Vec<RateKey> {
    vec![
        RateKey {
            dimension: RateDimension::Ip,
            value: ip.to_owned(),
        },
        RateKey {
            dimension: RateDimension::Fingerprint,
            value: fingerprint.to_owned(),
        },
    ]
}

const HOUR: [Duration; 1] = [Duration::from_secs(3600)];

#[tokio::test]
async fn rate_counts_and_earlier_approvals_are_the_same_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let approved = record(60_000, "default", "203.0.113.7", Decision::Approve);
    let rate_keys = keys("203.0.113.7", &approved.fingerprint);
    store
        .record(approved.clone(), None, rate_keys.clone())
        .await
        .unwrap();
    for ms in [61_000, 62_000] {
        let denied = record(ms, "default", "203.0.113.7", Decision::Deny);
        store.record(denied, None, rate_keys.clone()).await.unwrap();
    }
    let before = store.rate_counts(&rate_keys, &HOUR, 62_000).unwrap();
    assert_eq!(before, vec![vec![3], vec![3]]);
    close(store).await;

    let reopened = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        reopened.rate_counts(&rate_keys, &HOUR, 62_000).unwrap(),
        before
    );
    let stats = reopened
        .fingerprint_stats(&approved.fingerprint)
        .unwrap()
        .expect("the approval is remembered");
    assert_eq!(
        (stats.approved, stats.first_decision_id),
        (1, approved.decision_id)
    );
}

#[tokio::test]
async fn decisions_recorded_before_a_crash_are_found_by_every_filter_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut recorded = Vec::new();
    for n in 0..20u64 {
        let decision = record(1_000 + n, "acme", "198.51.100.9", Decision::Deny);
        store
            .record(decision.clone(), None, Vec::new())
            .await
            .unwrap();
        recorded.push(decision.decision_id);
    }
    // A crash: the store goes without writing its derived state (no close, no flush).
    let db_file = store.writing().path.path.join("db");
    drop(store);
    tokio::task::spawn_blocking(move || wait_until_unlocked(&db_file))
        .await
        .unwrap()
        .unwrap();

    let reopened = SledStore::open(dir.path()).unwrap();
    for query in [
        DecisionQuery {
            tenant: Some("acme".to_owned()),
            page_size: 100,
            ..DecisionQuery::default()
        },
        DecisionQuery {
            ip: Some("198.51.100.9".to_owned()),
            page_size: 100,
            ..DecisionQuery::default()
        },
    ] {
        let page = reopened.list_decisions(&query).unwrap();
        let mut found: Vec<String> = page.decisions.into_iter().map(|d| d.decision_id).collect();
        found.reverse();
        assert_eq!(found, recorded, "{query:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_listing_sees_a_decision_recorded_an_instant_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // Long enough to cross periodic index writes (one at open, then every PERSIST_EVERY):
    // a listing made while one is under way must still see the decision just recorded.
    let started = std::time::Instant::now();
    let mut n = 0u64;
    while started.elapsed() < PERSIST_EVERY * 2 {
        let mut decision = record(5_000 + n, "acme", "198.51.100.9", Decision::Approve);
        decision.fingerprint = format!("fp-instant-{n}");
        store
            .record(decision.clone(), None, Vec::new())
            .await
            .unwrap();
        let page = store
            .list_decisions(&DecisionQuery {
                fingerprint: Some(decision.fingerprint.clone()),
                ..DecisionQuery::default()
            })
            .unwrap();
        assert_eq!(page.decisions, [decision], "decision {n}");
        n += 1;
    }
}

#[tokio::test]
async fn over_its_size_budget_the_store_samples_repeated_malformed_denials_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(
        dir.path(),
        SledLimits {
            max_size_bytes: 1,
            ..SledLimits::default()
        },
    )
    .unwrap();
    let malformed = |ms: u64| DecisionRecord {
        error: Some(OAuthErrorCode::InvalidRedirectUri),
        fingerprint: "flood".to_owned(),
        ..record(ms, "default", "203.0.113.66", Decision::Deny)
    };
    let rate_keys = keys("203.0.113.66", "flood");
    let mut kept = 0;
    for n in 0..310u64 {
        let outcome = store
            .record(malformed(100_000 + n), None, rate_keys.clone())
            .await
            .unwrap();
        kept += u64::from(outcome == Recorded::Kept);
    }
    // The first ten make the fingerprint a repeat; of the 300 after them one in a hundred
    // is kept.
    assert_eq!(kept, 10 + 3);
    assert_eq!(store.stats().decisions_shed, 297);
    assert_eq!(
        store.rate_counts(&rate_keys, &HOUR, 100_309).unwrap()[0],
        vec![310],
        "shed decisions still count toward the rate limits"
    );

    let approval = DecisionRecord {
        fingerprint: "flood".to_owned(),
        ..record(200_000, "default", "203.0.113.66", Decision::Approve)
    };
    let policy_denial = DecisionRecord {
        fingerprint: "flood".to_owned(),
        ..record(200_001, "default", "203.0.113.66", Decision::Deny)
    };
    for decision in [approval, policy_denial] {
        let outcome = store
            .record(decision.clone(), None, rate_keys.clone())
            .await;
        assert_eq!(outcome.unwrap(), Recorded::Kept, "{:?}", decision.decision);
        assert!(store.get_decision(&decision.decision_id).unwrap().is_some());
    }
}
