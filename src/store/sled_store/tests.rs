//! Compaction: nothing recorded is lost, not even what is written during it, and the copy
//! is what the next start opens.

use std::sync::Arc;

use super::*;
use crate::step_up::{StepUpTicket, TicketState};
use crate::store::CacheEntry;
use crate::store::RateDimension;
use crate::store::tests::{close, record};
use crate::vocab::Decision;

fn ticket(decision: &DecisionRecord) -> StepUpTicket {
    StepUpTicket {
        ticket_id: format!("T{}", decision.decided_at_ms),
        tenant: decision.tenant.clone(),
        state: TicketState::Pending,
        challenges: vec!["admin_approval".to_owned()],
        fingerprint: decision.fingerprint.clone(),
        decision_id: decision.decision_id.clone(),
        created_at_ms: decision.decided_at_ms,
        expires_at_ms: decision.decided_at_ms + 60_000,
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
    }
}

fn ip_key(ip: &str) -> Vec<RateKey> {
    vec![RateKey {
        dimension: RateDimension::Ip,
        value: ip.to_owned(),
    }]
}

fn cache_entry() -> CacheEntry {
    CacheEntry {
        client_id: "https://app.example.com/client.json".to_owned(),
        body: b"{}".to_vec(),
        document_sha256: "00".repeat(32),
        content_type: Some("application/json".to_owned()),
        fetched_at_ms: 1,
        expires_at_ms: 2,
        revalidate_always: false,
        etag: Some("\"v1\"".to_owned()),
        last_modified: None,
    }
}

fn generations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("gen-"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_kind_of_record_and_the_copy_is_what_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let decision = record(60_000, "default", "203.0.113.7", Decision::Approve);
    store
        .record(
            decision.clone(),
            Some(ticket(&decision)),
            ip_key("203.0.113.7"),
        )
        .await
        .unwrap();
    store.cache_document(&cache_entry()).unwrap();
    let windows = [Duration::from_secs(3600)];
    let counts = store
        .rate_counts(&ip_key("203.0.113.7"), &windows, 60_000)
        .unwrap();
    assert_eq!(counts, vec![vec![1]]);

    let compaction = tokio::task::block_in_place(|| store.compact()).unwrap();
    assert!(compaction.after_bytes > 0);
    assert_eq!(generations(dir.path()), ["gen-000002"]);

    let check = |store: &SledStore| {
        assert_eq!(
            store.get_decision(&decision.decision_id).unwrap(),
            Some(decision.clone())
        );
        assert_eq!(
            store.get_ticket(&ticket(&decision).ticket_id).unwrap(),
            Some(ticket(&decision))
        );
        assert_eq!(
            store
                .rate_counts(&ip_key("203.0.113.7"), &windows, 60_000)
                .unwrap(),
            counts
        );
        assert_eq!(
            store
                .fingerprint_stats(&decision.fingerprint)
                .unwrap()
                .map(|stats| stats.approved),
            Some(1)
        );
        assert_eq!(
            store.cached_document(&cache_entry().client_id).unwrap(),
            Some(cache_entry())
        );
    };
    check(&store);
    close(store).await;
    let reopened = SledStore::open(dir.path()).unwrap();
    check(&reopened);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("CURRENT")).unwrap(),
        "gen-000002\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_made_while_compacting_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    for ms in 1..=3_000u64 {
        let decision = record(ms * 1_000, "default", "198.51.100.1", Decision::Deny);
        store
            .record(decision, None, ip_key("198.51.100.1"))
            .await
            .unwrap();
    }
    // Writers run before, during and after the compaction.
    let writers: Vec<_> = (0..4u64)
        .map(|lane| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::new();
                for n in 0..400u64 {
                    let ms = 10_000_000 + (n * 4 + lane) * 1_000;
                    let decision = record(ms, "default", "198.51.100.2", Decision::Deny);
                    written.push(decision.decision_id.clone());
                    store
                        .record(decision, None, ip_key("198.51.100.2"))
                        .await
                        .unwrap();
                }
                written
            })
        })
        .collect();
    let compaction = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.compact())
            .await
            .unwrap()
            .unwrap()
    };
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    assert!(
        compaction.replayed > 0,
        "the test should write during the copy; nothing was replayed"
    );
    let store = Arc::into_inner(store).unwrap();
    close(store).await;
    let reopened = SledStore::open(dir.path()).unwrap();
    let missing: Vec<_> = written
        .iter()
        .filter(|id| reopened.get_decision(id).unwrap().is_none())
        .collect();
    assert_eq!(
        missing,
        Vec::<&String>::new(),
        "decisions lost by compaction"
    );
    let counts = reopened
        .rate_counts(
            &ip_key("198.51.100.2"),
            &[Duration::from_secs(86_400)],
            10_000_000 + 1_600 * 1_000,
        )
        .unwrap();
    assert_eq!(counts, vec![vec![1_600]], "no rate count was lost either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_generations_opens_in_place_and_moves_at_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let decision = record(5_000, "default", "203.0.113.7", Decision::Approve);
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format_version", FORMAT_VERSION)
            .unwrap();
        db.open_tree("decisions")
            .unwrap()
            .insert(
                ulid::Ulid::from_string(&decision.decision_id)
                    .unwrap()
                    .to_bytes(),
                serde_json::to_vec(&decision).unwrap(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    wait_until_unlocked(&dir.path().join("db")).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get_decision(&decision.decision_id).unwrap(),
        Some(decision.clone())
    );
    tokio::task::block_in_place(|| store.compact()).unwrap();
    assert_eq!(generations(dir.path()), ["gen-000001"]);
    assert!(
        !dir.path().join("db").exists(),
        "the top-level sled files are gone"
    );
    close(store).await;
    let reopened = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get_decision(&decision.decision_id).unwrap(),
        Some(decision)
    );
}

#[tokio::test]
async fn a_corrupt_fingerprint_record_is_rebuilt_from_the_decision_log_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let first = record(1_000, "default", "203.0.113.7", Decision::Approve);
    let again = DecisionRecord {
        fingerprint: first.fingerprint.clone(),
        ..record(2_000, "default", "203.0.113.7", Decision::Approve)
    };
    let denied = DecisionRecord {
        fingerprint: first.fingerprint.clone(),
        ..record(3_000, "default", "203.0.113.7", Decision::Deny)
    };
    for decision in [&first, &again, &denied] {
        store
            .record(decision.clone(), None, Vec::new())
            .await
            .unwrap();
    }
    close(store).await;
    let live = match dir.path().join("gen-000001") {
        generation if generation.exists() => generation,
        _ => dir.path().to_owned(),
    };
    {
        let db = sled::open(&live).unwrap();
        db.open_tree("fingerprints")
            .unwrap()
            .insert(first.fingerprint.as_bytes(), b"not json".to_vec())
            .unwrap();
        db.flush().unwrap();
    }
    super::wait_until_unlocked(&live.join("db")).unwrap();

    let reopened = SledStore::open(dir.path()).unwrap();
    let stats = reopened
        .fingerprint_stats(&first.fingerprint)
        .unwrap()
        .expect("the earlier approvals are not forgotten");
    assert_eq!(stats.approved, 2, "two approvals, the denial not counted");
    assert_eq!(stats.first_decision_id, first.decision_id);
}

#[tokio::test]
async fn a_closed_store_can_be_opened_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20u64 {
        let store = SledStore::open(dir.path()).unwrap_or_else(|error| {
            panic!("round {round}: the directory was not released: {error}")
        });
        let decision = record(1_000 + round, "default", "203.0.113.7", Decision::Deny);
        store.record(decision, None, Vec::new()).await.unwrap();
        close(store).await;
    }
}

#[tokio::test]
async fn pruning_leaves_records_that_do_not_decode_and_counts_only_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let old = record(1_000, "default", "203.0.113.7", Decision::Approve);
    store.record(old.clone(), None, Vec::new()).await.unwrap();
    let db = store.reading().db.clone();
    let damaged_id = ulid::Ulid::from_parts(2_000, 1).to_bytes();
    db.open_tree("decisions")
        .unwrap()
        .insert(damaged_id, b"{not json".to_vec())
        .unwrap();
    db.open_tree("fingerprints")
        .unwrap()
        .insert(b"damaged-fp", b"{not json".to_vec())
        .unwrap();
    db.open_tree("step_up_tickets")
        .unwrap()
        .insert(b"damaged-ticket", b"{not json".to_vec())
        .unwrap();
    let report = store
        .prune(PruneCutoffs {
            decisions_ms: 1_000_000,
            tickets_ms: 1_000_000,
            rates_ms: 1_000_000,
            cimd_cache_ms: 0,
        })
        .unwrap();
    assert_eq!(
        report.decisions, 1,
        "only the decision that decodes is deleted"
    );
    assert_eq!(
        report.fingerprints, 1,
        "only the record that decodes is deleted"
    );
    assert_eq!(store.get_decision(&old.decision_id).unwrap(), None);
    assert!(
        db.open_tree("decisions")
            .unwrap()
            .get(damaged_id)
            .unwrap()
            .is_some()
    );
    assert!(
        db.open_tree("fingerprints")
            .unwrap()
            .get(b"damaged-fp")
            .unwrap()
            .is_some()
    );
    assert!(
        db.open_tree("step_up_tickets")
            .unwrap()
            .get(b"damaged-ticket")
            .unwrap()
            .is_some()
    );
    assert_eq!(store.expire_tickets(5_000_000).unwrap(), 0);
}

#[tokio::test]
async fn a_store_of_format_1_opens_and_is_marked_format_3() {
    let dir = tempfile::tempdir().unwrap();
    crate::store::tests::marked_as_format(dir.path(), "1");
    let store = SledStore::open(dir.path()).expect("format 1 is read as it is");
    let generation = store.reading();
    let marked = generation
        .db
        .open_tree("meta")
        .unwrap()
        .get("format_version")
        .unwrap();
    assert_eq!(marked.as_deref(), Some(&b"3"[..]));
}

#[tokio::test]
async fn a_store_of_format_2_loses_its_index_trees_and_keeps_every_decision_listed() {
    let dir = tempfile::tempdir().unwrap();
    let decision = record(7_000, "acme", "198.51.100.4", Decision::Approve);
    let id = ulid::Ulid::from_string(&decision.decision_id).unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("format_version", "2").unwrap();
        meta.insert("indexed_through_ms", &0u64.to_be_bytes())
            .unwrap();
        db.open_tree("decisions")
            .unwrap()
            .insert(id.to_bytes(), serde_json::to_vec(&decision).unwrap())
            .unwrap();
        let mut key = b"acme\0".to_vec();
        key.extend_from_slice(&id.to_bytes());
        db.open_tree("by_tenant").unwrap().insert(key, &[]).unwrap();
        db.flush().unwrap();
    }
    wait_until_unlocked(&dir.path().join("db")).unwrap();

    let store = SledStore::open(dir.path()).expect("format 2 opens in place");
    let generation = store.reading();
    let meta = generation.db.open_tree("meta").unwrap();
    assert_eq!(
        meta.get("format_version").unwrap().as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(meta.get("indexed_through_ms").unwrap(), None);
    let trees: Vec<Vec<u8>> = generation
        .db
        .tree_names()
        .iter()
        .map(|n| n.to_vec())
        .collect();
    for dropped in ["by_tenant", "by_ip", "by_client", "by_fingerprint"] {
        assert!(
            !trees.contains(&dropped.as_bytes().to_vec()),
            "{dropped} is still there"
        );
    }
    for query in [
        DecisionQuery {
            tenant: Some("acme".to_owned()),
            ..DecisionQuery::default()
        },
        DecisionQuery {
            ip: Some("198.51.100.4".to_owned()),
            ..DecisionQuery::default()
        },
        DecisionQuery {
            fingerprint: Some(decision.fingerprint.clone()),
            ..DecisionQuery::default()
        },
    ] {
        let page = store.list_decisions(&query).unwrap();
        assert_eq!(page.decisions, std::slice::from_ref(&decision), "{query:?}");
    }
}
