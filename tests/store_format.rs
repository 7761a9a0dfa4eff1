//! Format version 1 on disk: the records in `tests/fixtures/store/format-1/` decode with the
//! current code into the values they always meant, and encode back to the same JSON. A
//! renamed field or enum variant fails here instead of silently changing stored data.

use std::path::Path;

use clientgate::registration::{Code, Severity};
use clientgate::step_up::{StepUpTicket, TicketState};
use clientgate::store::{DecisionRecord, FORMAT_VERSION};
use clientgate::vocab::{Decision, RegistrationType};

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store/format-1")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Decodes `name` as a `T` and checks that encoding it again gives the same JSON.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str) -> T {
    let stored = fixture(name);
    let decoded: T = serde_json::from_value(stored.clone())
        .unwrap_or_else(|error| panic!("{name} no longer decodes: {error}"));
    let encoded = serde_json::to_value(&decoded).unwrap();
    assert_eq!(
        encoded, stored,
        "{name} encodes otherwise than it is stored"
    );
    decoded
}

/// Formats 2 and 3 changed where derived state lives (2: indexes, rate buckets and
/// fingerprint records written in batches after the decision; 3: no index trees, the list
/// indexes only in memory), not how a record is encoded: format 1's records are format 3's.
#[test]
fn this_build_reads_format_version_3_whose_records_are_those_of_format_1() {
    assert_eq!(FORMAT_VERSION, "3");
}

#[test]
fn a_stepped_up_cimd_decision_of_format_1_decodes_as_it_meant() {
    let record: DecisionRecord = round_trip("decision-step-up.json");
    assert_eq!(record.decision, Decision::StepUp);
    assert_eq!(record.registration_type, RegistrationType::Cimd);
    assert_eq!(record.findings[0].code, Code::UriHostMismatch);
    assert_eq!(record.findings[0].severity, Severity::Warning);
    let step_up = record.step_up.expect("the ticket it opened");
    assert_eq!(step_up.challenges, ["admin_approval"]);
    assert_eq!(step_up.expires_at_ms, 1_732_086_400_000);
}

#[test]
fn a_denied_dcr_decision_of_format_1_decodes_as_it_meant() {
    let record: DecisionRecord = round_trip("decision-deny.json");
    assert_eq!(record.decision, Decision::Deny);
    assert_eq!(record.registration_type, RegistrationType::Dcr);
    assert_eq!(
        record.error.map(|code| code.as_str()),
        Some("invalid_client_metadata")
    );
    assert_eq!(record.findings[0].code, Code::StepUpTicketMismatch);
    assert_eq!(record.findings[0].severity, Severity::Error);
    assert_eq!(record.software_id.as_deref(), Some("com.example.cli"));
}

#[test]
fn an_approved_ticket_of_format_1_decodes_as_it_meant() {
    let ticket: StepUpTicket = round_trip("ticket-approved.json");
    assert_eq!(ticket.state, TicketState::Approved);
    assert_eq!(ticket.resolver, "ops@example.com");
    assert_eq!(ticket.resolved_at_ms, Some(1_732_003_600_000));
}

#[test]
fn a_bound_and_redeemed_ticket_of_format_1_decodes_as_it_meant() {
    let ticket: StepUpTicket = round_trip("ticket-bound-redeemed.json");
    let binding = ticket.binding.as_ref().expect("what it approves");
    assert_eq!(
        binding.metadata_sha256,
        "2d9e6a0ef2b1d8f8cc3b2f7f3c1fb8f3ad2b55ab0ad1c5dc9ae8b70f3fd4b9c1"
    );
    assert_eq!(binding.document_sha256.as_deref(), Some("bfa1cddb"));
    assert_eq!(ticket.reasons[0].policy_id, "step_up_unapproved_domains");
    assert_eq!(ticket.findings[0].code, Code::UriHostMismatch);
    assert_eq!(ticket.max_uses, 2);
    assert_eq!(
        ticket.redemptions[0].decision_id,
        "01JDQ8ZK2M4X7B9C3D5E6F7G9A"
    );
    assert_eq!(ticket.redemptions[0].at_ms, 1_732_003_700_000);
    assert!(ticket.has_uses_left(), "one of two uses taken");
}

#[test]
fn a_ticket_written_before_the_review_fields_existed_still_decodes() {
    let stored = fixture("ticket-pending-before-review-fields.json");
    let ticket: StepUpTicket = serde_json::from_value(stored).unwrap();
    assert_eq!(ticket.state, TicketState::Pending);
    assert_eq!(ticket.resolved_at_ms, None);
    assert_eq!(ticket.resolver, "");
    assert_eq!(ticket.client_name, None);
}
