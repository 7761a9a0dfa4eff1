//! `validate_document` on arbitrary bytes under every profile, with and without
//! `allow_loopback`: no panic, `bounded(findings)` is bounded, and metadata without an
//! error finding serializes to a JSON object.
//!
//! The client_id compared with the document is the document's own `client_id` member when
//! it is a string (so the matching path is reached), otherwise a fixed URL.
#![no_main]

use clientgate::address::AddressRules;
use clientgate::cimd::document::{DEFAULT_SUPPORTED_GRANT_TYPES, DocumentRules, validate_document};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const FALLBACK_CLIENT_ID: &str = "https://app.example.com/oauth/client.json";

fuzz_target!(|data: &[u8]| {
    let own_client_id = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|value| value.get("client_id")?.as_str().map(str::to_owned));
    let client_id = own_client_id.as_deref().unwrap_or(FALLBACK_CLIENT_ID);
    for profile in common::PROFILES {
        for allow_loopback in [false, true] {
            let rules = DocumentRules {
                profile,
                supported_grant_types: DEFAULT_SUPPORTED_GRANT_TYPES
                    .iter()
                    .map(|grant| (*grant).to_owned())
                    .collect(),
                addresses: AddressRules {
                    allow_loopback,
                    deny: Vec::new(),
                },
            };
            let validation = validate_document(data, client_id, &rules);
            common::assert_metadata_json(&validation);
            if !validation.has_errors() {
                // Grant types the AS does not support were filtered out (implicit stays
                // only to be refused, so it cannot survive without an error).
                for grant in &validation.metadata.grant_types {
                    assert!(
                        DEFAULT_SUPPORTED_GRANT_TYPES.contains(&grant.as_str())
                            || grant == "implicit",
                        "unsupported grant type {grant:?} kept"
                    );
                }
            }
        }
    }
});
