//! The step-up concept as tables of cases: the lifecycle, opening and keeping a ticket,
//! redeeming a presented one, attested challenges, expiry and retention.

use std::time::Duration;

use super::*;
use crate::registration::Code;

fn ticket() -> StepUpTicket {
    StepUpTicket {
        ticket_id: "T".to_owned(),
        tenant: "default".to_owned(),
        state: TicketState::Pending,
        challenges: vec!["admin_approval".to_owned()],
        fingerprint: "fp".to_owned(),
        decision_id: "D".to_owned(),
        created_at_ms: 1_000,
        expires_at_ms: 2_000,
        resolved_at_ms: None,
        resolver: String::new(),
        note: String::new(),
        client_id: None,
        client_name: None,
        binding: Some(bound()),
        reasons: Vec::new(),
        findings: Vec::new(),
        max_uses: 1,
        redemptions: Vec::new(),
    }
}

/// The registration the test ticket was opened for.
fn bound() -> Binding {
    Binding::of(
        r#"{"client_name":"App","redirect_uris":["https://app.example.com/cb"],"scope":"openid"}"#,
        None,
    )
}

fn answer(approve: bool, now_ms: u64) -> OperatorResolution {
    OperatorResolution {
        approve,
        resolver: "ops@example.com".to_owned(),
        note: "checked".to_owned(),
        now_ms,
    }
}

#[test]
fn a_pending_ticket_is_approved_with_who_and_when() {
    let (approved, changed) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    assert!(changed);
    assert_eq!(approved.state, TicketState::Approved);
    assert_eq!(approved.resolved_at_ms, Some(1_500));
    assert_eq!(approved.resolver, "ops@example.com");
}

#[test]
fn repeating_the_same_resolution_is_harmless() {
    let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    let (again, changed) = resolve(approved.clone(), &answer(true, 1_600)).unwrap();
    assert!(!changed);
    assert_eq!(again, approved, "the first resolution stands");
}

#[test]
fn a_different_resolution_is_refused() {
    let (denied, _) = resolve(ticket(), &answer(false, 1_500)).unwrap();
    assert_eq!(
        resolve(denied, &answer(true, 1_600)),
        Err(ResolveRefusal::AlreadyResolved {
            ticket_id: "T".to_owned(),
            state: "denied"
        })
    );
}

#[test]
fn an_expired_ticket_cannot_be_resolved() {
    assert_eq!(
        resolve(ticket(), &answer(true, 2_000)),
        Err(ResolveRefusal::Expired("T".to_owned()))
    );
    assert_eq!(effective_state(&ticket(), 1_999), TicketState::Pending);
    assert_eq!(effective_state(&ticket(), 2_000), TicketState::Expired);
}

fn new_ticket() -> NewTicket {
    NewTicket {
        ticket_id: "NEW".to_owned(),
        decision_id: "D2".to_owned(),
        tenant: "default".to_owned(),
        fingerprint: "fp".to_owned(),
        challenges: vec![ADMIN_APPROVAL.to_owned()],
        now_ms: 10_000,
        ttl: Duration::from_secs(60),
        client_id: Some("https://app.example.com/client.json".to_owned()),
        client_name: Some("App".to_owned()),
        binding: bound(),
        reasons: Vec::new(),
        findings: Vec::new(),
        max_uses: 1,
    }
}

#[test]
fn a_step_up_opens_a_pending_ticket_that_expires_after_the_ttl() {
    let (reference, opened) = hold(None, new_ticket());
    let opened = opened.expect("a new ticket is opened");
    assert_eq!(opened.state, TicketState::Pending);
    assert_eq!(opened.ticket_id, "NEW");
    assert_eq!(opened.decision_id, "D2");
    assert_eq!(opened.created_at_ms, 10_000);
    assert_eq!(opened.expires_at_ms, 70_000);
    assert_eq!(opened.client_name.as_deref(), Some("App"));
    assert_eq!(
        reference,
        StepUpRef {
            ticket_id: "NEW".to_owned(),
            challenges: vec![ADMIN_APPROVAL.to_owned()],
            expires_at_ms: 70_000,
        }
    );
}

#[test]
fn a_step_up_with_a_pending_ticket_keeps_pointing_at_it_and_opens_nothing() {
    let pending = ticket();
    let (reference, opened) = hold(Some(&pending), new_ticket());
    assert_eq!(
        opened, None,
        "the operator is reviewing the presented ticket"
    );
    assert_eq!(reference.ticket_id, "T");
    assert_eq!(reference.expires_at_ms, 2_000);
    assert_eq!(reference.challenges, vec![ADMIN_APPROVAL.to_owned()]);
}

fn found(state: TicketState) -> PresentedTicket {
    PresentedTicket::Found(Box::new(StepUpTicket {
        state,
        note: "not ours".to_owned(),
        ..ticket()
    }))
}

#[test]
fn redeeming_a_presented_ticket() {
    struct Case {
        name: &'static str,
        presented: Option<PresentedTicket>,
        tenant: &'static str,
        fingerprint: &'static str,
        completed: &'static [&'static str],
        refusal: Option<Code>,
        pending: bool,
    }
    let cases = [
        Case {
            name: "no ticket contributes nothing",
            presented: None,
            tenant: "default",
            fingerprint: "fp",
            completed: &[],
            refusal: None,
            pending: false,
        },
        Case {
            name: "an approved ticket completes its challenges",
            presented: Some(found(TicketState::Approved)),
            tenant: "default",
            fingerprint: "fp",
            completed: &["admin_approval"],
            refusal: None,
            pending: false,
        },
        Case {
            name: "a pending ticket is kept",
            presented: Some(found(TicketState::Pending)),
            tenant: "default",
            fingerprint: "fp",
            completed: &[],
            refusal: None,
            pending: true,
        },
        Case {
            name: "an unknown ticket denies",
            presented: Some(PresentedTicket::Unknown("X".to_owned())),
            tenant: "default",
            fingerprint: "fp",
            completed: &[],
            refusal: Some(Code::StepUpTicketUnknown),
            pending: false,
        },
        Case {
            name: "an approved ticket of another registration denies",
            presented: Some(found(TicketState::Approved)),
            tenant: "default",
            fingerprint: "other",
            completed: &[],
            refusal: Some(Code::StepUpTicketMismatch),
            pending: false,
        },
        Case {
            name: "an approved ticket of another tenant denies",
            presented: Some(found(TicketState::Approved)),
            tenant: "acme",
            fingerprint: "fp",
            completed: &[],
            refusal: Some(Code::StepUpTicketMismatch),
            pending: false,
        },
        Case {
            name: "a denied ticket denies",
            presented: Some(found(TicketState::Denied)),
            tenant: "default",
            fingerprint: "fp",
            completed: &[],
            refusal: Some(Code::StepUpDenied),
            pending: false,
        },
        Case {
            name: "an expired ticket denies",
            presented: Some(found(TicketState::Expired)),
            tenant: "default",
            fingerprint: "fp",
            completed: &[],
            refusal: Some(Code::StepUpTicketExpired),
            pending: false,
        },
    ];
    for case in cases {
        let redemption = redeem(
            case.presented.as_ref(),
            case.tenant,
            case.fingerprint,
            &bound(),
        );
        assert_eq!(redemption.completed, case.completed, "{}", case.name);
        assert_eq!(
            redemption.refusal.as_ref().map(|finding| finding.code),
            case.refusal,
            "{}",
            case.name
        );
        if let Some(refusal) = &redemption.refusal {
            assert!(refusal.is_error(), "{}: a refusal denies", case.name);
            assert_eq!(refusal.field, "step_up.ticket_id", "{}", case.name);
        }
        assert_eq!(redemption.pending.is_some(), case.pending, "{}", case.name);
    }
}

#[test]
fn a_denied_ticket_says_the_operators_note() {
    let redemption = redeem(Some(&found(TicketState::Denied)), "default", "fp", &bound());
    assert_eq!(
        redemption.refusal.unwrap().message,
        "an operator denied this registration: not ours"
    );
}

/// The refusal an approved ticket gives for `presented`.
fn refusal_for(presented: &Binding) -> Option<(Code, String)> {
    redeem(
        Some(&found(TicketState::Approved)),
        "default",
        "fp",
        presented,
    )
    .refusal
    .map(|finding| (finding.code, finding.message))
}

#[test]
fn an_approved_ticket_approves_only_the_metadata_the_operator_saw() {
    let approved = redeem(
        Some(&found(TicketState::Approved)),
        "default",
        "fp",
        &bound(),
    );
    assert_eq!(approved.refusal, None);
    assert_eq!(approved.redeems.as_deref(), Some("T"));

    let widened = Binding::of(
        r#"{"client_name":"App","grant_types":["client_credentials"],"jwks_uri":"https://attacker.example/jwks.json","redirect_uris":["https://app.example.com/cb"],"scope":"admin offline_access openid"}"#,
        None,
    );
    let (code, message) = refusal_for(&widened).expect("a wider registration is refused");
    assert_eq!(code, Code::StepUpTicketMismatch);
    assert_eq!(
        message,
        "step-up ticket `T` was issued for a registration that differs from this one: \
         the metadata differs in `grant_types`, `jwks_uri`, `scope`"
    );
}

#[test]
fn a_cimd_ticket_is_bound_to_the_document_it_was_opened_for() {
    let with_document = |sha: &str| Binding {
        document_sha256: Some(sha.to_owned()),
        ..bound()
    };
    let ticket = PresentedTicket::Found(Box::new(StepUpTicket {
        state: TicketState::Approved,
        binding: Some(with_document("aaaa")),
        ..ticket()
    }));
    let redeem_with = |sha: &str| redeem(Some(&ticket), "default", "fp", &with_document(sha));
    assert_eq!(redeem_with("aaaa").refusal, None);
    let refusal = redeem_with("bbbb")
        .refusal
        .expect("a changed document is refused");
    assert_eq!(refusal.code, Code::StepUpTicketMismatch);
    assert!(
        refusal.message.contains(
            "the CIMD document changed since it was approved (sha256 aaaa then, bbbb now)"
        ),
        "{}",
        refusal.message
    );
}

#[test]
fn a_used_ticket_denies_naming_the_decision_it_approved() {
    let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    let used = approved.redeemed("D9", 1_600).expect("one use left");
    assert_eq!(used.redemptions.len(), 1);
    assert_eq!(used.redeemed("D10", 1_700), None, "no second approval");
    let refusal = redeem(
        Some(&PresentedTicket::Found(Box::new(used.clone()))),
        "default",
        "fp",
        &bound(),
    )
    .refusal
    .expect("a used ticket denies");
    assert_eq!(refusal.code, Code::StepUpTicketUsed);
    assert_eq!(
        refusal.message,
        "step-up ticket `T` was already redeemed by decision `D9`"
    );
    let twice = StepUpTicket {
        max_uses: 2,
        ..approved
    };
    let once = twice.redeemed("D9", 1_600).unwrap();
    assert!(
        once.redeemed("D10", 1_700).is_some(),
        "a second use when configured"
    );
    assert_eq!(
        ticket().redeemed("D9", 1_600),
        None,
        "a pending ticket gives no approval"
    );
}

#[test]
fn a_ticket_stored_before_binding_approves_nothing() {
    let legacy = PresentedTicket::Found(Box::new(StepUpTicket {
        state: TicketState::Approved,
        binding: None,
        ..ticket()
    }));
    let refusal = redeem(Some(&legacy), "default", "fp", &bound())
        .refusal
        .unwrap();
    assert_eq!(refusal.code, Code::StepUpTicketMismatch);
    assert!(
        refusal.message.contains("predates metadata binding"),
        "{}",
        refusal.message
    );
}

#[test]
fn the_authorization_server_can_attest_only_what_it_is_allowed_and_never_admin_approval() {
    let may_attest = vec!["user_consent".to_owned(), ADMIN_APPROVAL.to_owned()];
    let reported = vec![
        "user_consent".to_owned(),
        ADMIN_APPROVAL.to_owned(),
        "captcha".to_owned(),
    ];
    let (accepted, warnings) = accept_attested(&reported, &may_attest);
    assert_eq!(accepted, vec!["user_consent".to_owned()]);
    let codes: Vec<_> = warnings.iter().map(|w| (w.code, w.is_error())).collect();
    assert_eq!(
        codes,
        vec![
            (Code::ChallengeNotAttestable, false),
            (Code::ChallengeNotAttestable, false)
        ]
    );
    assert!(warnings[0].message.contains("`admin_approval`"));
    assert!(warnings[1].message.contains("`captcha`"));
}

#[test]
fn the_expiry_scan_expires_only_pending_tickets_past_their_expiry() {
    let expired = expire(&ticket(), 2_000).expect("past its expiry");
    assert_eq!(expired.state, TicketState::Expired);
    assert_eq!(expire(&ticket(), 1_999), None, "not yet");
    let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    assert_eq!(
        expire(&approved, 5_000),
        None,
        "a resolved ticket stays resolved"
    );
}

#[test]
fn tickets_are_kept_until_the_cutoff_passes_their_expiry_and_resolution() {
    let pending = ticket();
    assert!(is_retained(&pending, 2_000));
    assert!(!is_retained(&pending, 2_001));
    let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    assert!(is_retained(&approved, 2_000), "kept until its expiry");
    assert!(!is_retained(&approved, 2_001));
    let late = StepUpTicket {
        state: TicketState::Approved,
        resolved_at_ms: Some(5_000),
        ..ticket()
    };
    assert!(is_retained(&late, 5_000), "kept until its resolution");
    assert!(!is_retained(&late, 5_001));
}

#[test]
fn a_ticket_read_after_its_expiry_reads_as_expired_before_the_scan_stores_it() {
    assert_eq!(as_of(ticket(), 1_999).state, TicketState::Pending);
    assert_eq!(as_of(ticket(), 2_000).state, TicketState::Expired);
    let (approved, _) = resolve(ticket(), &answer(true, 1_500)).unwrap();
    assert_eq!(as_of(approved, 9_000).state, TicketState::Approved);
}
