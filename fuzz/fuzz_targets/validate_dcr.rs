//! `validate_dcr` on arbitrary UTF-8 under every profile: no panic, `bounded(findings)`
//! is bounded, and metadata without an error finding serializes to a JSON object.
#![no_main]

use clientgate::registration::validate_dcr;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for profile in common::PROFILES {
        let validation = validate_dcr(text, profile);
        common::assert_metadata_json(&validation);
    }
});
