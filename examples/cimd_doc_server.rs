//! A local HTTPS server for trying CIMD with clientgate on one machine.
//!
//! It serves every `*.json` document of a directory (default: the real client documents in
//! `tests/fixtures/real-cimd`) at the URL its `client_id` names, with a certificate from a
//! CA made on the spot, and writes a clientgate configuration that pins those host names to
//! it (`[cimd]` `allow_loopback`, `ca_file`, `resolve`: development only).
//!
//! ```sh
//! cargo run --example cimd_doc_server -- [--tls] [DIR [OUT_DIR]]
//! ```
//!
//! The configuration goes to `OUT_DIR/clientgate.toml` (default: a directory under the
//! system's temporary directory), with the test CA beside it as `OUT_DIR/test-ca.pem`. With
//! `--tls` the same CA also issues clientgate's own certificate (`localhost`, `127.0.0.1`),
//! written to `OUT_DIR` with its key, and the configuration serves it (`[tls]`). A document with an `x-served-at` member is served at that
//! URL instead of its `client_id`: a test fixture for a document that claims another
//! client_id than the URL it is served from.

#[allow(dead_code)]
#[path = "../tests/common/doc_server.rs"]
mod doc_server;

use std::path::PathBuf;

use doc_server::{Behaviour, DocServer};

#[tokio::main]
async fn main() {
    let (flags, args): (Vec<String>, Vec<String>) = std::env::args()
        .skip(1)
        .partition(|arg| arg.starts_with("--"));
    if let Some(unknown) = flags.iter().find(|flag| *flag != "--tls") {
        eprintln!("unknown option {unknown}; usage: cimd_doc_server [--tls] [DIR [OUT_DIR]]");
        std::process::exit(2);
    }
    let dir = args.first().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-cimd")
    });
    let docs = DocServer::start().await;
    let mut served = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("a directory of documents")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    // Sorted by name, so the newest dated capture of a client_id is the one served.
    paths.sort();
    for path in paths {
        let body = std::fs::read(&path).expect("a readable document");
        let Some(client_id) = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| {
                json["x-served-at"]
                    .as_str()
                    .or(json["client_id"].as_str())
                    .map(str::to_owned)
            })
        else {
            continue;
        };
        let Some((host, path)) = client_id
            .strip_prefix("https://")
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        docs.route(host, &format!("/{path}"), Behaviour::json(body));
        served.push(client_id);
    }
    let out = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("clientgate-cimd-dev"));
    std::fs::create_dir_all(&out).expect("a config directory");
    std::fs::copy(&docs.ca_file, out.join("test-ca.pem")).expect("a copy of the test CA");
    let tls = if flags.is_empty() {
        String::new()
    } else {
        docs.write_clientgate_tls(&out)
    };
    let config = docs.write_config(&out, true, &tls);
    served.sort();
    served.dedup();
    println!(
        "serving {} documents on https://{} (test CA: {})",
        served.len(),
        docs.addr,
        out.join("test-ca.pem").display()
    );
    for client_id in &served {
        println!("  {client_id}");
    }
    println!(
        "\nstart clientgate with:\n  cargo run --release -- serve --config {}",
        config.display()
    );
    println!("\nCtrl-C stops this server.");
    let _ = tokio::signal::ctrl_c().await;
}
