//! Properties shared by the validation targets.
#![allow(dead_code)]

use clientgate::registration::findings::{MAX_FINDINGS, MAX_MESSAGE_CHARS, bounded};
use clientgate::registration::{Finding, Profile, Validation};

pub const PROFILES: [Profile; 3] = [Profile::Mcp, Profile::Strict, Profile::Interop];

/// `bounded(findings)` keeps at most MAX_FINDINGS + 1 findings, each message at most
/// MAX_MESSAGE_CHARS characters and each field at most 120; an input at or under the limit
/// keeps every finding, in order, with the same codes and severities.
pub fn assert_bounded(findings: &[Finding]) {
    let out = bounded(findings.to_vec());
    assert!(
        out.len() <= MAX_FINDINGS + 1,
        "bounded() kept {} findings",
        out.len()
    );
    for finding in &out {
        let chars = finding.message.chars().count();
        assert!(
            chars <= MAX_MESSAGE_CHARS,
            "message of {chars} chars: {:?}",
            finding.message
        );
        assert!(finding.field.chars().count() <= 120, "field {:?}", finding.field);
    }
    if findings.len() <= MAX_FINDINGS {
        assert_eq!(out.len(), findings.len());
        for (a, b) in findings.iter().zip(&out) {
            assert_eq!((a.code, a.severity), (b.code, b.severity));
        }
    } else {
        assert_eq!(out.len(), MAX_FINDINGS + 1);
        // The truncation marker is an error when any finding left out was one.
        let left_out_error = findings[MAX_FINDINGS..].iter().any(Finding::is_error);
        assert_eq!(out[MAX_FINDINGS].is_error(), left_out_error);
    }
}

/// With no error finding, the normalized metadata serializes to a JSON object.
pub fn assert_metadata_json(validation: &Validation) {
    assert_bounded(&validation.findings);
    if validation.has_errors() {
        return;
    }
    let json = validation.metadata.to_json();
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(serde_json::Value::Object(_)) => {}
        other => panic!("metadata.to_json() is not a JSON object: {json:?} ({other:?})"),
    }
}
