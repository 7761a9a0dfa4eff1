//! `/metrics` (for the `operator` role), `/healthz` and `/readyz` (for probes, without
//! credentials) on the admin listener.

use super::*;

/// How long a readiness answer is reused.
const READINESS_FOR: Duration = Duration::from_secs(1);
/// A store failure this recent makes the server not ready without a new check.
const FAILURE_COUNTS_FOR: Duration = Duration::from_secs(10);

pub(super) async fn healthz() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// Ready: policies in force and a store that takes writes (its last decision was
/// recorded, and a flush reaches the disk now).
pub(super) async fn readyz(State(shared): Shared_) -> Response {
    let mut last = shared.readiness.lock().await;
    if let Some((at, status, body)) = last.as_ref()
        && at.elapsed() < READINESS_FOR
    {
        return text(*status, body);
    }
    let (status, body) = readiness(&shared.console.engine).await;
    *last = Some((std::time::Instant::now(), status, body.clone()));
    text(status, &body)
}

pub(super) async fn readiness(engine: &Engine) -> (StatusCode, String) {
    if engine.policies().policy_count() == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no policies in force\n".to_owned(),
        );
    }
    if let Some(error) = engine.last_store_failure(FAILURE_COUNTS_FOR) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store refused the last decision: {error}\n"),
        );
    }
    match engine.store().flush().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store cannot flush: {error}\n"),
        ),
    }
}

pub(super) async fn metrics(State(shared): Shared_, request: Request) -> Response {
    let console = &shared.console;
    if let Err(error) = console.gate.admit_http(
        request.headers(),
        request.extensions(),
        None,
        Role::Operator,
    ) {
        let status = match error {
            crate::auth::AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        let mut response = text(status, &format!("{error}\n"));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"clientgate\""),
        );
        return response;
    }
    let engine = &console.engine;
    let store = engine.store().clone();
    let stats = store.stats();
    let pending = tokio::task::spawn_blocking(move || count_pending(store.as_ref()))
        .await
        .unwrap_or(0);
    let policies = engine.policies();
    let gauges = Gauges {
        pending_step_ups: pending,
        policy_version: policies.version.clone(),
        policy_loaded_at_secs: console
            .reloader
            .status()
            .loaded_at
            .map_or(0, |at| millis(at) / 1000),
        decisions_recorded: stats.decisions_recorded,
        decisions_shed: stats.decisions_shed,
        store_commits: stats.flushes,
        store_commit_micros: stats.commit_micros,
        store_batch_size: stats.commit_batch,
        webhook_queue: console.notifier.as_ref().map_or(0, |n| n.queued()),
    };
    let body = crate::metrics::render(engine.events().metrics(), &gauges);
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(super) fn count_pending(store: &dyn crate::store::Store) -> u64 {
    let now = millis(SystemTime::now());
    let mut query = TicketQuery {
        state: Some(TicketState::Pending),
        page_size: 1000,
        ..TicketQuery::default()
    };
    let mut count = 0;
    for _ in 0..100 {
        let Ok(page) = store.list_tickets(&query, now) else {
            break;
        };
        count += page.tickets.len() as u64;
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    count
}
