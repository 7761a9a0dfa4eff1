//! What the embedded store takes in memory and on disk: records 100,000 decisions (realistic
//! ~800-byte records with their rate keys, 128 writers at a time, each group-committed) and
//! caches 10,000 CIMD documents, then prints the process's resident memory (now and at its
//! peak), the store's size on disk, and how long it took; then closes the store and opens it
//! again, which lists the whole decision log (the list indexes are only in memory), and
//! prints how long that took.
//!
//! ```sh
//! cargo run --release --example store_footprint
//! ```
//!
//! Figures, not pass/fail. The issue's budget is 150 MB of RSS after this load.

#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../tests/common/records.rs"]
mod records;

use std::sync::Arc;
use std::time::Instant;

use clientgate::store::{CacheEntry, SledStore, Store};

/// The allocator the `clientgate` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DECISIONS: u64 = 100_000;
const DOCUMENTS: u64 = 10_000;
const WRITERS: u64 = 128;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(SledStore::open(dir.path()).expect("a store"));
    println!("start: {}", process::memory());
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|lane| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in (lane..DECISIONS).step_by(WRITERS as usize) {
                    let (record, keys) = records::decision(n);
                    store.record(record, None, keys).await.expect("recorded");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer");
    }
    let decided = started.elapsed();
    println!(
        "{DECISIONS} decisions recorded in {:.1} s ({:.0}/s, {} group commits): {}",
        decided.as_secs_f64(),
        DECISIONS as f64 / decided.as_secs_f64(),
        store.stats().flushes,
        process::memory()
    );
    let body = document_body();
    for n in 0..DOCUMENTS {
        let client_id = format!("https://client{n}.example.com/oauth/client.json");
        store
            .cache_document(&CacheEntry {
                client_id: client_id.clone(),
                body: body.replace("CLIENT_ID", &client_id).into_bytes(),
                document_sha256: format!("{n:064x}"),
                content_type: Some("application/json".to_owned()),
                fetched_at_ms: 1_700_000_000_000,
                expires_at_ms: 1_700_000_000_000 + 86_400_000,
                revalidate_always: false,
                etag: Some(format!("\"{n}\"")),
                last_modified: None,
            })
            .expect("cached");
    }
    store.flush().await.expect("flushed");
    println!("{DOCUMENTS} documents cached: {}", process::memory());
    println!(
        "store on disk: {:.1} MiB",
        store.size_on_disk().expect("a size") as f64 / (1024.0 * 1024.0)
    );
    let store = Arc::into_inner(store).expect("no writer holds the store");
    store.close().await.expect("closed");
    let reopening = Instant::now();
    let store = SledStore::open(dir.path()).expect("the store opens again");
    println!(
        "reopened in {:.2} s (every decision listed again): {}",
        reopening.elapsed().as_secs_f64(),
        process::memory()
    );
    drop(store);
}

/// A CIMD document of the size real ones have (about 700 bytes).
fn document_body() -> String {
    r#"{"client_id":"CLIENT_ID","client_name":"Example MCP client","client_uri":"https://example.com","logo_uri":"https://example.com/logo.png","redirect_uris":["http://127.0.0.1/callback","http://localhost/callback","https://example.com/oauth/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none","scope":"openid profile email offline_access","software_id":"com.example.mcp","software_version":"1.2.3","tos_uri":"https://example.com/terms","policy_uri":"https://example.com/privacy"}"#.to_owned()
}
