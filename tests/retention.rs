//! Retention: 100,000 decisions written under a one-hour retention and pruned as the
//! server's background pruner does leave only that hour behind, index entries included,
//! and the store stays below a stated size on disk because pruning compacts it (sled 0.34
//! alone never gives freed space back: without compaction this run ends near 370 MiB).
//! And the server's background pruner compacts a store that has outgrown its limit.

mod common;

use std::sync::Arc;
use std::time::Instant;

use clientgate::proto::ListDecisionsRequest;
use common::records::{SPACING_MS, decision};
use common::{Server, dcr, starter_policies};

use clientgate::store::{DecisionQuery, PruneCutoffs, SledLimits, SledStore, Store};

const TOTAL: u64 = 100_000;
/// One hour of decisions is kept.
const RETENTION_MS: u64 = 3_600_000;
/// The pruner runs every this many decisions (every ~1.4 simulated hours).
const PRUNE_EVERY: u64 = 5_000;
/// The store compacts above this size (and above twice its size after the last
/// compaction)…
const COMPACT_ABOVE: u64 = 32 * MIB;
/// …and so never takes more than this, even just before a pruning pass. The live data grows
/// for the first simulated day, as rate buckets are kept for the longest window (24 h): a
/// compacted store holds about 18 MiB after 3 hours and 37 MiB after 27.
const STATED_LIMIT: u64 = 96 * MIB;
const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_only_the_retention_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SledStore::open_with(
            dir.path(),
            SledLimits {
                above_bytes: COMPACT_ABOVE,
                max_size_bytes: 0,
            },
        )
        .unwrap(),
    );
    let started = Instant::now();
    let mut largest = 0;
    let mut compactions = 0;
    for batch in 0..TOTAL / PRUNE_EVERY {
        let first = batch * PRUNE_EVERY;
        let writers: Vec<_> = (0..64u64)
            .map(|lane| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut n = first + lane;
                    while n < first + PRUNE_EVERY {
                        let (record, keys) = decision(n);
                        store.record(record, None, keys).await.unwrap();
                        n += 64;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let before_pruning = store.size_on_disk().unwrap();
        largest = largest.max(before_pruning);
        let now_ms = 1_700_000_000_000 + (first + PRUNE_EVERY) * SPACING_MS;
        let cutoff = now_ms - RETENTION_MS;
        let report = store
            .prune(PruneCutoffs {
                decisions_ms: cutoff,
                tickets_ms: cutoff,
                rates_ms: now_ms - 86_400_000,
                cimd_cache_ms: 0,
            })
            .unwrap();
        let size = store.size_on_disk().unwrap();
        largest = largest.max(size);
        let compacted = match report.compaction {
            Some(compaction) => {
                compactions += 1;
                format!(
                    ", compacted {:.1} → {:.1} MiB in {} ms (writes paused {} ms)",
                    mib(compaction.before_bytes),
                    mib(compaction.after_bytes),
                    compaction.took.as_millis(),
                    compaction.writes_paused.as_millis(),
                )
            }
            None => String::new(),
        };
        println!(
            "after {:>6} decisions: store {:.1} MiB, pruned {:>5}{compacted}, store {:.1} MiB",
            first + PRUNE_EVERY,
            mib(before_pruning),
            report.decisions,
            mib(size),
        );
    }
    let live = store
        .list_decisions(&DecisionQuery {
            page_size: 1000,
            ..DecisionQuery::default()
        })
        .unwrap();
    let newest = live.decisions.first().unwrap();
    assert_eq!(
        newest.decided_at_ms,
        1_700_000_000_000 + (TOTAL - 1) * SPACING_MS
    );
    let mut kept = 0;
    let mut token = None;
    loop {
        let page = store
            .list_decisions(&DecisionQuery {
                page_size: 1000,
                page_token: token,
                ..DecisionQuery::default()
            })
            .unwrap();
        kept += page.decisions.len();
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    println!(
        "{TOTAL} decisions in {:.1} s; {kept} kept; {compactions} compactions; largest store \
         {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(largest),
    );
    assert!(
        largest < STATED_LIMIT,
        "the store reached {:.1} MiB, above the stated {:.0} MiB",
        mib(largest),
        mib(STATED_LIMIT)
    );
    assert!(compactions > 0, "pruning compacted the store");
    assert_eq!(
        kept,
        (RETENTION_MS / SPACING_MS) as usize,
        "exactly an hour of decisions is kept"
    );
    let by_ip = store
        .list_decisions(&DecisionQuery {
            ip: Some("198.51.100.7".to_owned()),
            page_size: 1000,
            ..DecisionQuery::default()
        })
        .unwrap();
    assert_eq!(
        by_ip.decisions.len(),
        18,
        "index entries of pruned decisions are gone too"
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_pruner_compacts_a_store_over_its_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&starter_policies(), data.path(), &[]);
    let mut client = server.registration().await;
    for n in 0..400 {
        let metadata =
            format!(r#"{{"client_name":"C{n}","redirect_uris":["https://app.example.com/{n}"]}}"#);
        client
            .evaluate(dcr(&metadata, "203.0.113.9"))
            .await
            .unwrap();
    }
    drop(client);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(data.path().join("gen-000001").is_dir());

    // The pruner's first pass runs at start.
    let config = data.path().join("small.toml");
    std::fs::write(&config, "[store]\ncompact_above_mib = 1\n").unwrap();
    let server = Server::start(
        &starter_policies(),
        data.path(),
        &["--config", config.to_str().unwrap()],
    );
    let mut waited = 0;
    while !server.log().contains("compacted the store") {
        assert!(waited < 300, "no compaction logged:\n{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(data.path().join("gen-000002").is_dir(), "{}", server.log());
    assert!(!data.path().join("gen-000001").exists());
    let listed = server
        .admin()
        .await
        .list_decisions(ListDecisionsRequest {
            page_size: 1000,
            ..ListDecisionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.decisions.len(), 400, "every decision survived");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
