//! The store's behaviour, run against both backends: the embedded sled store and the
//! PostgreSQL store (on a throwaway server each test starts). Whatever an operator or the
//! engine relies on — listing, paging, tickets and their redemption, rate windows,
//! fingerprints, the CIMD cache, disagreements, the audit trail, retention — must not
//! depend on where the state lives.

mod common;

use std::sync::Arc;
use std::time::Duration;

use clientgate::step_up::{OperatorResolution, ResolveRefusal, StepUpTicket, TicketState};
use clientgate::store::{
    AdminAction, CacheEntry, DecisionPage, DecisionQuery, DecisionRecord, Disagreement,
    PAGE_BYTE_BUDGET, PgStore, PostgresSettings, PruneCutoffs, RateDimension, RateKey,
    ResolveError, ShadowOutcome, SledStore, Store, StoreError,
};
use clientgate::vocab::{Decision, Reason, RegistrationType};
use common::postgres::Postgres;

/// A store under test, with what keeps it alive (its directory or its server).
struct Subject {
    store: Arc<dyn Store>,
    _home: Home,
}

enum Home {
    Sled(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] Postgres),
}

fn sled() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    Subject {
        store: Arc::new(SledStore::open(dir.path()).unwrap()),
        _home: Home::Sled(dir),
    }
}

fn postgres() -> Subject {
    let server = Postgres::start();
    let store = PgStore::connect(&settings(&server)).expect("connects to the test server");
    Subject {
        store: Arc::new(store),
        _home: Home::Postgres(server),
    }
}

fn settings(server: &Postgres) -> PostgresSettings {
    PostgresSettings {
        url: server.url(),
        pool_size: 8,
        statement_timeout: Duration::from_secs(10),
        ca_file: None,
    }
}

/// Runs a behaviour on each backend, as two tests.
macro_rules! on_both {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$behaviour(super::sled()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$behaviour(super::postgres()).await
            }
        }
    )*};
}

on_both!(
    listing_filters_pages_and_orders_newest_first,
    concurrent_records_share_commits,
    a_step_up_ticket_is_written_with_its_decision_and_resolved_once,
    two_simultaneous_redemptions_of_a_single_use_ticket_record_one_approval,
    rate_windows_slide_over_minute_buckets,
    approvals_are_counted_per_fingerprint_from_the_first,
    a_decision_observes_its_rate_counts_and_fingerprint_in_one_read,
    cached_documents_are_kept_evicted_and_pruned_once_expired,
    approved_documents_are_kept_per_tenant,
    shadow_disagreements_are_listed_newest_first_in_pages_and_pruned_with_decisions,
    the_admin_audit_trail_is_listed_newest_first,
    a_page_of_large_records_ends_at_its_byte_budget_with_a_token_for_the_rest,
    pending_tickets_past_their_expiry_are_expired_and_pruned_by_retention,
);

fn record(ms: u64, tenant: &str, ip: &str, decision: Decision) -> DecisionRecord {
    DecisionRecord {
        decision_id: ulid::Ulid::from_parts(ms, u128::from(ms) * 7919).to_string(),
        decided_at_ms: ms,
        tenant: tenant.to_owned(),
        registration_type: RegistrationType::Dcr,
        client_id: None,
        client_name: Some("C".to_owned()),
        software_id: None,
        fingerprint: format!("fp-{}", ms % 3),
        ip: Some(ip.to_owned()),
        user_agent: String::new(),
        decision,
        reasons: vec![Reason {
            policy_id: "p".to_owned(),
            message: "m".to_owned(),
        }],
        findings: Vec::new(),
        error: None,
        error_description: None,
        obligations: Vec::new(),
        step_up: None,
        policy_version: "v1".to_owned(),
        latency_micros: 10,
        client_metadata_json: "{}".to_owned(),
        redeemed_ticket: None,
    }
}

fn ticket(id: &str, opening: &DecisionRecord, expires_at_ms: u64) -> StepUpTicket {
    StepUpTicket {
        ticket_id: id.to_owned(),
        tenant: opening.tenant.clone(),
        state: TicketState::Pending,
        challenges: vec!["admin_approval".to_owned()],
        fingerprint: opening.fingerprint.clone(),
        decision_id: opening.decision_id.clone(),
        created_at_ms: opening.decided_at_ms,
        expires_at_ms,
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

fn resolution(approve: bool, now_ms: u64) -> OperatorResolution {
    OperatorResolution {
        approve,
        resolver: "ops".to_owned(),
        note: String::new(),
        now_ms,
    }
}

fn times(page: &DecisionPage) -> Vec<u64> {
    page.decisions.iter().map(|d| d.decided_at_ms).collect()
}

fn no_cutoffs() -> PruneCutoffs {
    PruneCutoffs {
        decisions_ms: 0,
        tickets_ms: 0,
        rates_ms: 0,
        cimd_cache_ms: 0,
    }
}

async fn listing_filters_pages_and_orders_newest_first(subject: Subject) {
    let store = &subject.store;
    for ms in 1..=30u64 {
        let tenant = if ms % 2 == 0 { "even" } else { "odd" };
        let ip = if ms % 5 == 0 {
            "2001:db8::5"
        } else {
            "198.51.100.1"
        };
        let decision = if ms % 3 == 0 {
            Decision::Deny
        } else {
            Decision::Approve
        };
        store
            .record(record(ms, tenant, ip, decision), None, Vec::new())
            .await
            .unwrap();
    }
    let query = |change: &dyn Fn(&mut DecisionQuery)| {
        let mut query = DecisionQuery {
            page_size: 100,
            ..DecisionQuery::default()
        };
        change(&mut query);
        store.list_decisions(&query).unwrap()
    };
    assert_eq!(times(&query(&|_| {})), (1..=30).rev().collect::<Vec<_>>());
    assert_eq!(
        times(&query(&|q| q.ip = Some("2001:db8::5".to_owned()))),
        vec![30, 25, 20, 15, 10, 5]
    );
    assert_eq!(
        times(&query(&|q| {
            q.tenant = Some("even".to_owned());
            q.decision = Some(Decision::Deny);
        })),
        vec![30, 24, 18, 12, 6]
    );
    assert_eq!(
        times(&query(&|q| {
            q.since_ms = Some(10);
            q.until_ms = Some(14);
        })),
        vec![13, 12, 11, 10]
    );
    assert_eq!(
        times(&query(&|q| q.fingerprint = Some("fp-0".to_owned()))),
        vec![30, 27, 24, 21, 18, 15, 12, 9, 6, 3]
    );
    assert_eq!(
        times(&query(
            &|q| q.registration_type = Some(RegistrationType::Cimd)
        )),
        Vec::<u64>::new(),
        "no CIMD decision was recorded"
    );

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_decisions(&DecisionQuery {
                tenant: Some("odd".to_owned()),
                page_size: 4,
                page_token: token,
                ..DecisionQuery::default()
            })
            .unwrap();
        assert!(page.decisions.len() <= 4);
        seen.extend(times(&page));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=30).rev().filter(|ms| ms % 2 == 1).collect::<Vec<_>>()
    );
    let one = record(7, "odd", "198.51.100.1", Decision::Approve);
    assert_eq!(store.get_decision(&one.decision_id).unwrap(), Some(one));
    assert_eq!(
        store.get_decision("01NOSUCHDECISION0000000000").unwrap(),
        None
    );
}

async fn concurrent_records_share_commits(subject: Subject) {
    let store = subject.store.clone();
    let writers: Vec<_> = (0..200u64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record(
                        record(10_000 + n, "default", "203.0.113.7", Decision::Deny),
                        None,
                        Vec::new(),
                    )
                    .await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.decisions_recorded, 200);
    assert!(
        stats.flushes < 200,
        "200 concurrent records took {} commits; group commit should share them",
        stats.flushes
    );
    let all = store
        .list_decisions(&DecisionQuery {
            page_size: 1000,
            ..DecisionQuery::default()
        })
        .unwrap();
    assert_eq!(
        all.decisions.len(),
        200,
        "every acknowledged decision is there"
    );
}

async fn a_step_up_ticket_is_written_with_its_decision_and_resolved_once(subject: Subject) {
    let store = &subject.store;
    let opening = record(5_000, "default", "203.0.113.7", Decision::StepUp);
    let pending = ticket("01TICKET", &opening, 9_000);
    store
        .record(opening, Some(pending.clone()), Vec::new())
        .await
        .unwrap();
    assert_eq!(store.get_ticket("01TICKET").unwrap(), Some(pending.clone()));
    let listed = store
        .list_tickets(
            &clientgate::store::TicketQuery {
                state: Some(TicketState::Pending),
                ..Default::default()
            },
            6_000,
        )
        .unwrap();
    assert_eq!(listed.tickets, [pending]);

    let (approved, changed) = store
        .resolve_ticket("01TICKET", resolution(true, 6_000))
        .await
        .unwrap()
        .unwrap();
    assert!(changed);
    assert_eq!(approved.state, TicketState::Approved);
    assert_eq!(approved.resolver, "ops");
    let (_, changed) = store
        .resolve_ticket("01TICKET", resolution(true, 6_500))
        .await
        .unwrap()
        .unwrap();
    assert!(!changed, "approving again changes nothing");
    let refused = store
        .resolve_ticket("01TICKET", resolution(false, 7_000))
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Err(ResolveError::Refused(
                ResolveRefusal::AlreadyResolved { .. }
            ))
        ),
        "an approved ticket cannot be denied afterwards: {refused:?}"
    );
    let missing = store
        .resolve_ticket("01NOSUCH", resolution(true, 7_000))
        .await
        .unwrap();
    assert_eq!(missing, Err(ResolveError::NotFound("01NOSUCH".to_owned())));
    assert_eq!(
        store.get_ticket("01TICKET").unwrap().unwrap().state,
        TicketState::Approved
    );
}

async fn two_simultaneous_redemptions_of_a_single_use_ticket_record_one_approval(subject: Subject) {
    let store = subject.store.clone();
    let opening = record(5_000, "default", "203.0.113.7", Decision::StepUp);
    store
        .record(
            opening.clone(),
            Some(ticket("01TICKET", &opening, 9_000)),
            Vec::new(),
        )
        .await
        .unwrap();
    store
        .resolve_ticket("01TICKET", resolution(true, 6_000))
        .await
        .unwrap()
        .unwrap();
    let redeeming = |ms: u64| {
        let store = store.clone();
        tokio::spawn(async move {
            let decision = DecisionRecord {
                redeemed_ticket: Some("01TICKET".to_owned()),
                ..record(ms, "default", "203.0.113.7", Decision::Approve)
            };
            let id = decision.decision_id.clone();
            (id, store.record(decision, None, Vec::new()).await)
        })
    };
    let (first, second) = (redeeming(7_000), redeeming(7_001));
    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    let recorded: Vec<&String> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(recorded.len(), 1, "exactly one approval: {outcomes:?}");
    let spent = outcomes
        .iter()
        .find(|(_, outcome)| outcome.is_err())
        .unwrap();
    assert!(
        matches!(&spent.1, Err(StoreError::TicketSpent { ticket_id }) if ticket_id == "01TICKET"),
        "{spent:?}"
    );
    assert_eq!(
        store.get_decision(&spent.0).unwrap(),
        None,
        "the refused redemption wrote nothing"
    );
    let redeemed = store.get_ticket("01TICKET").unwrap().unwrap();
    assert_eq!(redeemed.redemptions.len(), 1);
    assert_eq!(&redeemed.redemptions[0].decision_id, recorded[0]);
}

fn ip_key(ip: &str) -> RateKey {
    RateKey {
        dimension: RateDimension::Ip,
        value: ip.to_owned(),
    }
}

async fn rate_windows_slide_over_minute_buckets(subject: Subject) {
    let store = &subject.store;
    let minute = 60_000;
    let base = 1_000 * minute;
    // Two registrations in minute 1000, one in minute 1059, one in minute 1060.
    for ms in [
        base + 1,
        base + 59_999,
        base + 59 * minute + 5,
        base + 60 * minute,
    ] {
        let decision = record(ms, "default", "203.0.113.7", Decision::Deny);
        store
            .record(decision, None, vec![ip_key("203.0.113.7")])
            .await
            .unwrap();
    }
    let windows = [Duration::from_secs(60), Duration::from_secs(3600)];
    let key = [ip_key("203.0.113.7")];
    let at = |ms: u64| store.rate_counts(&key, &windows, ms).unwrap()[0].clone();
    assert_eq!(at(base + 30_000), vec![2, 2], "inside the first minute");
    assert_eq!(
        at(base + minute),
        vec![2, 2],
        "a burst is still counted at the turn of the minute"
    );
    assert_eq!(
        at(base + minute + 45_000),
        vec![1, 2],
        "a quarter of minute 1000 is still inside the 1m window: half a registration, rounded up"
    );
    assert_eq!(
        at(base + 2 * minute),
        vec![0, 2],
        "the 1m window has left minute 1000"
    );
    assert_eq!(
        at(base + 59 * minute),
        vec![1, 3],
        "the hour still holds minute 1000"
    );
    assert_eq!(
        at(base + 60 * minute),
        vec![2, 4],
        "exactly an hour on, minute 1000 is inside"
    );
    assert_eq!(
        at(base + 61 * minute),
        vec![1, 2],
        "minute 1000 left the hour"
    );
    let both = store
        .rate_counts(
            &[ip_key("203.0.113.70"), ip_key("203.0.113.7")],
            &windows,
            base,
        )
        .unwrap();
    assert_eq!(
        both,
        vec![vec![0, 0], vec![2, 2]],
        "keys do not bleed into each other"
    );

    store
        .prune(PruneCutoffs {
            rates_ms: base + 59 * minute,
            ..no_cutoffs()
        })
        .unwrap();
    assert_eq!(
        at(base + 60 * minute),
        vec![2, 2],
        "pruned buckets no longer count"
    );
}

async fn approvals_are_counted_per_fingerprint_from_the_first(subject: Subject) {
    let store = &subject.store;
    let first = record(1_000, "default", "203.0.113.7", Decision::Approve);
    let denied = same_fingerprint(&first, 1_001, Decision::Deny);
    let second = same_fingerprint(&first, 1_002, Decision::Approve);
    for decision in [first.clone(), denied, second] {
        store.record(decision, None, Vec::new()).await.unwrap();
    }
    let stats = store
        .fingerprint_stats(&first.fingerprint)
        .unwrap()
        .unwrap();
    assert_eq!(stats.approved, 2, "only approvals count");
    assert_eq!(stats.first_decision_id, first.decision_id);
    assert_eq!(stats.first_seen_ms, 1_000);
    assert_eq!(store.fingerprint_stats("fp-unseen").unwrap(), None);
}

/// What the engine reads before each decision (`Store::observation`, one round trip on
/// PostgreSQL) is what the separate reads give: a rate limit or a duplicate check that read
/// less would approve a flood or miss a duplicate.
async fn a_decision_observes_its_rate_counts_and_fingerprint_in_one_read(subject: Subject) {
    let store = &subject.store;
    let first = record(2_000, "default", "203.0.113.9", Decision::Approve);
    let second = same_fingerprint(&first, 2_001, Decision::Approve);
    for decision in [first.clone(), second] {
        store
            .record(decision, None, vec![ip_key("203.0.113.9")])
            .await
            .unwrap();
    }
    let windows = [Duration::from_secs(60), Duration::from_secs(3600)];
    let keys = [ip_key("203.0.113.9"), ip_key("203.0.113.10")];
    let observed = store
        .observation(&keys, &windows, 30_000, &first.fingerprint)
        .await
        .unwrap();
    assert_eq!(observed.counts, vec![vec![2, 2], vec![0, 0]]);
    assert_eq!(
        observed.counts,
        store.rate_counts(&keys, &windows, 30_000).unwrap()
    );
    let duplicates = observed.duplicates.expect("the fingerprint was approved");
    assert_eq!(duplicates.approved, 2);
    assert_eq!(duplicates.first_decision_id, first.decision_id);
    let unseen = store
        .observation(&[], &windows, 30_000, "fp-unseen")
        .await
        .unwrap();
    assert!(unseen.counts.is_empty());
    assert_eq!(unseen.duplicates, None);
}

/// Another decision at `ms`, from the same caller, of a registration with `first`'s fingerprint.
fn same_fingerprint(first: &DecisionRecord, ms: u64, decision: Decision) -> DecisionRecord {
    DecisionRecord {
        fingerprint: first.fingerprint.clone(),
        ..record(
            ms,
            &first.tenant,
            first.ip.as_deref().unwrap_or_default(),
            decision,
        )
    }
}

fn cache_entry(client_id: &str, expires_at_ms: u64) -> CacheEntry {
    CacheEntry {
        client_id: client_id.to_owned(),
        body: format!(r#"{{"client_id":"{client_id}"}}"#).into_bytes(),
        document_sha256: "00".repeat(32),
        content_type: Some("application/json".to_owned()),
        fetched_at_ms: 1_000,
        expires_at_ms,
        revalidate_always: false,
        etag: Some("\"v1\"".to_owned()),
        last_modified: None,
    }
}

async fn cached_documents_are_kept_evicted_and_pruned_once_expired(subject: Subject) {
    let store = &subject.store;
    let old = cache_entry("https://old.example.com/client.json", 2_000);
    let fresh = cache_entry("https://app.example.com/client.json", 90_000);
    let gone = cache_entry("https://gone.example.com/client.json", 90_000);
    for entry in [&old, &fresh, &gone] {
        store.cache_document(entry).unwrap();
    }
    let replaced = CacheEntry {
        etag: Some("\"v2\"".to_owned()),
        ..fresh.clone()
    };
    store.cache_document(&replaced).unwrap();
    assert_eq!(
        store.cached_document(&fresh.client_id).unwrap(),
        Some(replaced.clone())
    );
    store.evict_document(&gone.client_id).unwrap();
    assert_eq!(store.cached_document(&gone.client_id).unwrap(), None);

    let report = store
        .prune(PruneCutoffs {
            cimd_cache_ms: 50_000,
            ..no_cutoffs()
        })
        .unwrap();
    assert_eq!(report.cached_documents, 1, "{report:?}");
    assert_eq!(store.cached_document(&old.client_id).unwrap(), None);
    assert_eq!(
        store.cached_document(&fresh.client_id).unwrap(),
        Some(replaced)
    );
}

async fn approved_documents_are_kept_per_tenant(subject: Subject) {
    let store = &subject.store;
    let client_id = "https://app.example.com/client.json";
    store
        .set_approved_document("a", client_id, b"{\"v\":1}")
        .unwrap();
    store
        .set_approved_document("b", client_id, b"{\"v\":2}")
        .unwrap();
    store
        .set_approved_document("a", client_id, b"{\"v\":3}")
        .unwrap();
    assert_eq!(
        store.approved_document("a", client_id).unwrap().as_deref(),
        Some(&b"{\"v\":3}"[..])
    );
    assert_eq!(
        store.approved_document("b", client_id).unwrap().as_deref(),
        Some(&b"{\"v\":2}"[..])
    );
    assert_eq!(store.approved_document("c", client_id).unwrap(), None);
}

fn disagreement(ms: u64) -> Disagreement {
    let side = |decision| ShadowOutcome {
        decision,
        policies: vec!["p".to_owned()],
        obligations: Vec::new(),
        challenges: Vec::new(),
        version: "v".to_owned(),
    };
    Disagreement {
        decision_id: ulid::Ulid::from_parts(ms, u128::from(ms) * 7919).to_string(),
        decided_at_ms: ms,
        tenant: "default".to_owned(),
        client_id: None,
        client_name: Some("C".to_owned()),
        live: side(Decision::Approve),
        candidate: side(Decision::Deny),
    }
}

async fn shadow_disagreements_are_listed_newest_first_in_pages_and_pruned_with_decisions(
    subject: Subject,
) {
    let store = &subject.store;
    for ms in [1_000, 2_000, 3_000] {
        store.record_disagreement(&disagreement(ms)).unwrap();
    }
    let first = store.list_disagreements(2, None).unwrap();
    let at: Vec<u64> = first
        .disagreements
        .iter()
        .map(|d| d.decided_at_ms)
        .collect();
    assert_eq!(at, [3_000, 2_000]);
    let rest = store.list_disagreements(2, first.next_page_token).unwrap();
    assert_eq!(rest.disagreements, [disagreement(1_000)]);
    assert_eq!(rest.next_page_token, None);

    store
        .prune(PruneCutoffs {
            decisions_ms: 2_500,
            ..no_cutoffs()
        })
        .unwrap();
    let kept = store.list_disagreements(0, None).unwrap();
    assert_eq!(kept.disagreements, [disagreement(3_000)]);
}

async fn the_admin_audit_trail_is_listed_newest_first(subject: Subject) {
    let store = &subject.store;
    let action = |ms: u64| AdminAction {
        action_id: ulid::Ulid::from_parts(ms, 1).to_string(),
        at_ms: ms,
        actor: "token:ops".to_owned(),
        action: "resolve_step_up".to_owned(),
        target: format!("ticket-{ms}"),
        outcome: "approved".to_owned(),
        peer: Some("127.0.0.1:5000".to_owned()),
    };
    for ms in [1_000, 2_000, 3_000] {
        store.record_admin_action(action(ms)).await.unwrap();
    }
    let first = store.list_admin_actions(2, None).unwrap();
    assert_eq!(first.actions, [action(3_000), action(2_000)]);
    let rest = store.list_admin_actions(2, first.next_page_token).unwrap();
    assert_eq!(rest.actions, [action(1_000)]);
    assert_eq!(rest.next_page_token, None);
}

async fn a_page_of_large_records_ends_at_its_byte_budget_with_a_token_for_the_rest(
    subject: Subject,
) {
    let store = &subject.store;
    let large = "x".repeat(200 * 1024);
    for ms in 1..=20 {
        let decision = DecisionRecord {
            client_metadata_json: format!("{{\"client_name\":\"{large}\"}}"),
            ..record(ms, "default", "203.0.113.7", Decision::Deny)
        };
        store.record(decision, None, Vec::new()).await.unwrap();
    }
    let (mut seen, mut pages, mut token) = (0, 0, None);
    loop {
        let page = store
            .list_decisions(&DecisionQuery {
                page_size: 1000,
                page_token: token,
                ..DecisionQuery::default()
            })
            .unwrap();
        let bytes: usize = page
            .decisions
            .iter()
            .map(|d| d.client_metadata_json.len())
            .sum();
        assert!(bytes <= PAGE_BYTE_BUDGET, "a page of {bytes} bytes");
        assert!(!page.decisions.is_empty());
        seen += page.decisions.len();
        pages += 1;
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 20, "paging still reaches every record");
    assert!(pages >= 4, "{pages} pages");
}

async fn pending_tickets_past_their_expiry_are_expired_and_pruned_by_retention(subject: Subject) {
    let store = &subject.store;
    let early = record(1_000, "default", "203.0.113.7", Decision::StepUp);
    let late = record(2_000, "default", "203.0.113.7", Decision::StepUp);
    store
        .record(
            early.clone(),
            Some(ticket("01EARLY", &early, 5_000)),
            Vec::new(),
        )
        .await
        .unwrap();
    store
        .record(
            late.clone(),
            Some(ticket("01LATE", &late, 50_000)),
            Vec::new(),
        )
        .await
        .unwrap();
    let listed = store
        .list_tickets(
            &clientgate::store::TicketQuery {
                state: Some(TicketState::Expired),
                ..Default::default()
            },
            6_000,
        )
        .unwrap();
    assert_eq!(
        listed
            .tickets
            .iter()
            .map(|t| t.ticket_id.as_str())
            .collect::<Vec<_>>(),
        ["01EARLY"],
        "a pending ticket past its expiry is listed as expired before the scan marks it"
    );
    assert_eq!(store.expire_tickets(6_000).unwrap(), 1);
    assert_eq!(store.expire_tickets(6_000).unwrap(), 0, "expired once");
    assert_eq!(
        store.get_ticket("01EARLY").unwrap().unwrap().state,
        TicketState::Expired
    );
    let report = store
        .prune(PruneCutoffs {
            tickets_ms: 10_000,
            ..no_cutoffs()
        })
        .unwrap();
    assert_eq!(report.tickets, 1, "{report:?}");
    assert_eq!(store.get_ticket("01EARLY").unwrap(), None);
    assert!(
        store.get_ticket("01LATE").unwrap().is_some(),
        "still pending: kept"
    );
}

/// A direct connection to the test server, for what the store does not offer.
async fn connect(server: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connects to the test server");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_by_a_newer_clientgate_is_refused_with_its_version() {
    let server = Postgres::start();
    drop(PgStore::connect(&settings(&server)).expect("a fresh database is migrated"));
    connect(&server)
        .await
        .execute("INSERT INTO clientgate_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    let error = PgStore::connect(&settings(&server))
        .err()
        .expect("schema 99 is refused")
        .to_string();
    assert!(error.contains("schema version 99"), "{error}");
    assert!(
        error.contains(&format!("up to {}", clientgate::store::SCHEMA_VERSION)),
        "{error}"
    );
    assert!(!error.contains("password"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_skip_their_pass_while_another_replica_runs_it() {
    let server = Postgres::start();
    let store = PgStore::connect(&settings(&server)).unwrap();
    let early = record(1_000, "default", "203.0.113.7", Decision::StepUp);
    store
        .record(
            early.clone(),
            Some(ticket("01EARLY", &early, 5_000)),
            Vec::new(),
        )
        .await
        .unwrap();
    let other_replica = connect(&server).await;
    for lock in [
        clientgate::store::EXPIRY_LOCK,
        clientgate::store::PRUNE_LOCK,
    ] {
        other_replica
            .execute("SELECT pg_advisory_lock($1)", &[&lock])
            .await
            .unwrap();
    }
    let cutoffs = PruneCutoffs {
        decisions_ms: 10_000,
        ..no_cutoffs()
    };
    let (expired, pruned) = tokio::task::spawn_blocking({
        let store = Arc::new(store);
        move || {
            let outcome = (
                store.expire_tickets(6_000).unwrap(),
                store.prune(cutoffs).unwrap(),
            );
            (outcome, store)
        }
    })
    .await
    .map(|(outcome, store)| {
        assert!(store.get_decision(&early.decision_id).unwrap().is_some());
        outcome
    })
    .unwrap();
    assert_eq!(expired, 0, "the expiry pass is another replica's");
    assert_eq!(
        pruned.decisions, 0,
        "the retention pass is another replica's"
    );
    other_replica
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    let store = PgStore::connect(&settings(&server)).unwrap();
    assert_eq!(
        store.expire_tickets(6_000).unwrap(),
        1,
        "with the lock free, it runs"
    );
    assert_eq!(store.prune(cutoffs).unwrap().decisions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_reached_over_tls_with_the_configured_ca_and_refused_without_it() {
    let (server, ca_file) = Postgres::start_tls();
    let plain = PgStore::connect(&settings(&server))
        .err()
        .expect("the server takes TLS connections only")
        .to_string();
    assert!(plain.contains("cannot open the store"), "{plain}");

    let over_tls = PgStore::connect(&PostgresSettings {
        ca_file: Some(ca_file),
        ..settings(&server)
    })
    .expect("TLS with the server's CA connects");
    let decision = record(1_000, "default", "203.0.113.7", Decision::Approve);
    over_tls
        .record(decision.clone(), None, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        over_tls.get_decision(&decision.decision_id).unwrap(),
        Some(decision)
    );

    let other_ca = tempfile::tempdir().unwrap();
    let (_other, wrong_ca) = {
        let (other, ca) = Postgres::start_tls();
        let copy = other_ca.path().join("ca.pem");
        std::fs::copy(&ca, &copy).unwrap();
        (other, copy)
    };
    let refused = PgStore::connect(&PostgresSettings {
        ca_file: Some(wrong_ca),
        ..settings(&server)
    })
    .err()
    .expect("a certificate from another CA is refused")
    .to_string();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
}
