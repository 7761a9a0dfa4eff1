//! What sled 0.34 alone takes for the load of `store_footprint`: 100,000 ~800-byte records
//! inserted into one tree by 128 writers, each write made durable by the store's own group
//! commit (sled's flush, then `fdatasync`), with the store's sled configuration. No rate
//! counters, no fingerprints, no decision: the floor the embedded store cannot go below on
//! sled. `INDEXES=1` adds the four index entries per record the store writes in batches.
//!
//! ```sh
//! cargo run --release --example sled_floor
//! ```
//!
//! Figures, not pass/fail: resident memory, size on disk, inserts per second and the CPU
//! each insert cost (process CPU time over the load).

#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../tests/common/records.rs"]
mod records;

use std::time::Instant;

use clientgate::store::group_commit::GroupCommit;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: u64 = 100_000;
const WRITERS: u64 = 128;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(32 * 1024 * 1024)
        .open()
        .expect("a sled database");
    let tree = db.open_tree("decisions").expect("a tree");
    // With `INDEXES=1`, also the four index trees the store keeps (one entry each).
    let indexes = std::env::var_os("INDEXES").map(|_| {
        ["by_tenant", "by_ip", "by_client", "by_fingerprint"]
            .map(|name| db.open_tree(name).expect("an index tree"))
    });
    println!("start: {}", process::memory());
    let (started, cpu) = (Instant::now(), process::cpu_seconds());
    let commit = GroupCommit::start(db.clone(), dir.path()).expect("a group commit");
    let writers: Vec<_> = (0..WRITERS)
        .map(|lane| {
            let (tree, commit) = (tree.clone(), commit.clone());
            let indexes = indexes.clone();
            tokio::spawn(async move {
                for n in (lane..RECORDS).step_by(WRITERS as usize) {
                    let (record, _) = records::decision(n);
                    let id: ulid::Ulid = record.decision_id.parse().expect("a ULID");
                    let value = serde_json::to_vec(&record).expect("JSON");
                    tree.insert(id.to_bytes(), value).expect("inserted");
                    if let Some(indexes) = &indexes {
                        for (index, value) in indexes.iter().zip([
                            record.tenant.as_str(),
                            record.ip.as_deref().unwrap_or(""),
                            record.client_name.as_deref().unwrap_or(""),
                            record.fingerprint.as_str(),
                        ]) {
                            let mut key = value.as_bytes().to_vec();
                            key.push(0);
                            key.extend_from_slice(&id.to_bytes());
                            index.insert(key, &[]).expect("indexed");
                        }
                    }
                    commit.durable().await.expect("durable");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer");
    }
    let (took, cpu) = (
        started.elapsed().as_secs_f64(),
        process::cpu_seconds() - cpu,
    );
    db.flush().expect("flushed");
    println!(
        "{RECORDS} records in {took:.1} s ({:.0}/s, {} group commits, {:.1} µs CPU each): {}",
        RECORDS as f64 / took,
        commit.flushes(),
        cpu * 1e6 / RECORDS as f64,
        process::memory()
    );
    println!(
        "on disk: {:.1} MiB",
        db.size_on_disk().expect("a size") as f64 / (1024.0 * 1024.0)
    );
}
