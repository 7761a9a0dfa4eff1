//! The admin HTTP surface on the admin listener, beside `AdminService` and
//! `StepUpService`: the approvals console (`/console`, server-rendered, no script),
//! Prometheus metrics (`/metrics`) and the probes (`/healthz`, `/readyz`).
//!
//! The console signs in with an operator credential — a token posted once, or the TLS
//! client certificate — and then uses a session cookie; every form carries the session's
//! CSRF token, and a POST whose `Origin` is another site is refused. A caller without the
//! `operator` role sees the sign-in page and nothing else. Resolving a ticket goes through
//! `Engine::resolve_step_up`, like `ResolveStepUp`: the resolver is the signed-in identity.

mod monitoring;
mod pages;
mod session;
mod sign_in;
mod throttle;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::gate::{self, Gate};
use crate::app::reload::PolicyReloader;
use crate::auth::Role;
use crate::engine::Engine;
use crate::metrics::Gauges;
use crate::notify::Notifier;
use crate::step_up::{OperatorResolution, TicketState};
use crate::store::{DecisionQuery, TicketQuery};
use crate::vocab::{RegistrationType, millis};
use session::{SESSION_COOKIE, SIGN_IN_COOKIE, Session, Sessions};

/// The largest form body read.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Rows on a page of decisions.
const PAGE_ROWS: usize = 50;
/// Decisions of one fingerprint counted for the pending list (shown as `50+` beyond).
const FINGERPRINT_COUNT: usize = 50;

/// What the admin HTTP surface reads and changes.
pub struct Console {
    pub engine: Arc<Engine>,
    pub reloader: Arc<PolicyReloader>,
    pub gate: Gate,
    pub notifier: Option<Arc<Notifier>>,
    /// Whether the listener speaks TLS (the session cookie is then `Secure`).
    pub tls: bool,
    pub session_ttl: Duration,
}

struct Shared {
    console: Console,
    sessions: Sessions,
    /// Failed sign-ins per source.
    sign_ins: throttle::Throttle,
    /// The last readiness answer and when it was made: probes share one check a second,
    /// so that nobody can make the store sync by asking.
    readiness: tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, String)>>,
}

/// The routes of the admin HTTP surface.
pub fn router(console: Console) -> Router {
    let sessions = Sessions::new(console.session_ttl);
    let shared = Arc::new(Shared {
        console,
        sessions,
        sign_ins: throttle::Throttle::default(),
        readiness: tokio::sync::Mutex::new(None),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/console", get(|| async { see_other("/console/pending") }))
        .route("/console/", get(|| async { see_other("/console/pending") }))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/pending", get(pending))
        .route("/console/tickets/{id}", get(ticket))
        .route("/console/tickets/{id}/resolve", post(resolve))
        .route("/console/decisions", get(decisions))
        .route("/console/decisions/{id}", get(decision))
        .route("/console/policies", get(policies))
        .with_state(shared)
}

type Shared_ = State<Arc<Shared>>;

use monitoring::{healthz, metrics, readyz};
use sign_in::{cross_site, session_of, sign_in, sign_in_page, sign_out};

async fn style() -> Response {
    let mut response = Response::new(Body::from(pages::STYLE));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css"));
    response
}

async fn pending(State(shared): Shared_, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&shared, &headers) else {
        return see_other("/console/sign-in");
    };
    let store = shared.console.engine.store().clone();
    let now = millis(SystemTime::now());
    let loaded = tokio::task::spawn_blocking(move || {
        let page = store.list_tickets(
            &TicketQuery {
                state: Some(TicketState::Pending),
                page_size: 200,
                ..TicketQuery::default()
            },
            now,
        )?;
        let mut counts = Vec::new();
        for ticket in &page.tickets {
            let same = store.list_decisions(&DecisionQuery {
                fingerprint: Some(ticket.fingerprint.clone()),
                page_size: FINGERPRINT_COUNT,
                ..DecisionQuery::default()
            })?;
            counts.push(if same.next_page_token.is_some() {
                format!("{}+", same.decisions.len())
            } else {
                same.decisions.len().to_string()
            });
        }
        Ok::<_, crate::store::StoreError>((page.tickets, counts))
    })
    .await;
    let (tickets, counts) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(error)) => {
            return page(
                &session,
                "Pending approvals",
                &pages::problem(&error.to_string()),
            );
        }
        Err(error) => {
            return page(
                &session,
                "Pending approvals",
                &pages::problem(&error.to_string()),
            );
        }
    };
    let rows: Vec<pages::PendingRow<'_>> = tickets
        .iter()
        .zip(counts)
        .map(|(ticket, same_fingerprint)| pages::PendingRow {
            ticket,
            client_domain: client_domain(ticket),
            same_fingerprint,
            now_ms: now,
        })
        .collect();
    page(&session, "Pending approvals", &pages::pending(&rows))
}

/// The registrable domain a ticket's client says it is from: its CIMD client_id's, else
/// its `client_uri`'s.
fn client_domain(ticket: &crate::step_up::StepUpTicket) -> Option<String> {
    let host = ticket.client_id_host().or_else(|| {
        let binding = ticket.binding.as_ref()?;
        let metadata: serde_json::Value =
            serde_json::from_str(&binding.client_metadata_json).ok()?;
        let uri = url::Url::parse(metadata["client_uri"].as_str()?).ok()?;
        uri.host_str().map(str::to_owned)
    })?;
    crate::registration::uri::registrable_domain(&host)
}

/// The longest ticket or decision id looked up (ULIDs have 26 characters).
const MAX_ID_CHARS: usize = 64;

async fn ticket(
    State(shared): Shared_,
    Path(id): Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let Some((_, session)) = session_of(&shared, &headers) else {
        return see_other("/console/sign-in");
    };
    if !is_id(&id) {
        return text(StatusCode::NOT_FOUND, "no such ticket\n");
    }
    let resolved = uri.query() == Some("resolved=1");
    ticket_page(&shared, &session, &id, resolved.then_some(Notice::Resolved)).await
}

/// What a ticket page says above the ticket.
enum Notice {
    /// Just resolved: the page says the state it now has.
    Resolved,
    Refused(String),
}

/// A ticket or decision id as the store mints them (ULIDs: 26 letters and digits); anything
/// else is looked up nowhere and never echoed into a header.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn ticket_page(
    shared: &Shared,
    session: &Session,
    id: &str,
    notice: Option<Notice>,
) -> Response {
    let store = shared.console.engine.store().clone();
    let ticket_id = id.to_owned();
    let loaded = tokio::task::spawn_blocking(move || {
        let Some(ticket) = store.get_ticket(&ticket_id)? else {
            return Ok(None);
        };
        let opened_by = store.get_decision(&ticket.decision_id)?;
        let earlier = store
            .list_decisions(&DecisionQuery {
                fingerprint: Some(ticket.fingerprint.clone()),
                page_size: 20,
                ..DecisionQuery::default()
            })?
            .decisions;
        Ok::<_, crate::store::StoreError>(Some((ticket, opened_by, earlier)))
    })
    .await;
    let title = format!("Ticket {id}");
    match loaded {
        Ok(Ok(Some((ticket, opened_by, earlier)))) => {
            let notice = match notice {
                Some(Notice::Resolved) => Some(format!("Ticket {}.", ticket.state.as_str())),
                Some(Notice::Refused(why)) => Some(why),
                None => None,
            };
            let mut body = notice
                .map(|n| format!("<p class=\"box\" id=\"notice\">{}</p>", pages::esc(&n)))
                .unwrap_or_default();
            body.push_str(&pages::ticket(
                &ticket,
                client_domain(&ticket).as_deref(),
                opened_by.as_ref(),
                &earlier,
                &session.csrf,
                millis(SystemTime::now()),
            ));
            page(session, &title, &body)
        }
        Ok(Ok(None)) => {
            let mut response = page(session, &title, &pages::problem("No such ticket."));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
        Ok(Err(error)) => page(session, &title, &pages::problem(&error.to_string())),
        Err(error) => page(session, &title, &pages::problem(&error.to_string())),
    }
}

async fn resolve(State(shared): Shared_, Path(id): Path<String>, request: Request) -> Response {
    let peer = peer(&request);
    let (parts, body) = request.into_parts();
    let Some((_, session)) = session_of(&shared, &parts.headers) else {
        return forbidden();
    };
    let form = match read_form(body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if cross_site(&parts.headers, &parts.uri)
        || !session::same_token(&session.csrf, field(&form, "csrf"))
    {
        return forbidden();
    }
    if !is_id(&id) {
        return text(StatusCode::NOT_FOUND, "no such ticket\n");
    }
    let approve = match field(&form, "action") {
        "approve" => true,
        "deny" => false,
        _ => return text(StatusCode::BAD_REQUEST, "`action` is approve or deny\n"),
    };
    let note: String = field(&form, "note")
        .trim()
        .chars()
        .take(super::step_up::MAX_NOTE_CHARS)
        .collect();
    let resolution = OperatorResolution {
        approve,
        resolver: session.identity.clone(),
        note,
        now_ms: millis(SystemTime::now()),
    };
    let resolved = shared
        .console
        .engine
        .resolve_step_up(&id, resolution, session.identity.clone(), peer)
        .await;
    let notice = match resolved {
        Ok(Ok(ticket)) => {
            tracing::info!(ticket_id = %ticket.ticket_id, state = ticket.state.as_str(), resolver = %session.identity, "step-up resolved in the console");
            // Post, redirect, get: reloading the page does not post the form again.
            return see_other_to(format!("/console/tickets/{id}?resolved=1"));
        }
        Ok(Err(refused)) => format!("Not resolved: {refused}"),
        Err(error) => format!("Not resolved: the store failed: {error}"),
    };
    let mut response = ticket_page(&shared, &session, &id, Some(Notice::Refused(notice))).await;
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::CONFLICT;
    }
    response
}

async fn decisions(State(shared): Shared_, request: Request) -> Response {
    let Some((_, session)) = session_of(&shared, request.headers()) else {
        return see_other("/console/sign-in");
    };
    let query_text = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query_text.as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let filters = pages::Filters {
        decision: get("decision"),
        tenant: get("tenant"),
        kind: get("type"),
        client: get("client"),
        ip: get("ip"),
        since: get("since"),
        until: get("until"),
        fingerprint: get("fingerprint"),
    };
    let now = SystemTime::now();
    let query = match decision_query(&filters, &get("page"), now) {
        Ok(query) => query,
        Err(problem) => {
            let body = pages::problem(&problem) + &pages::decisions(&filters, &[], None);
            return page(&session, "Decisions", &body);
        }
    };
    let store = shared.console.engine.store().clone();
    match tokio::task::spawn_blocking(move || store.list_decisions(&query)).await {
        Ok(Ok(found)) => page(
            &session,
            "Decisions",
            &pages::decisions(
                &filters,
                &found.decisions,
                found.next_page_token.map(|token| token.to_string()),
            ),
        ),
        Ok(Err(error)) => page(&session, "Decisions", &pages::problem(&error.to_string())),
        Err(error) => page(&session, "Decisions", &pages::problem(&error.to_string())),
    }
}

/// The store query of the decisions page's filters; `Err` names the filter at fault.
fn decision_query(
    filters: &pages::Filters,
    page_token: &str,
    now: SystemTime,
) -> Result<DecisionQuery, String> {
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    let decision = match filters.decision.as_str() {
        "" => None,
        text => Some(pages::decision_filter(text).ok_or(format!("`{text}` is not a decision"))?),
    };
    let registration_type = match filters.kind.as_str() {
        "" => None,
        "dcr" => Some(RegistrationType::Dcr),
        "cimd" => Some(RegistrationType::Cimd),
        other => return Err(format!("`{other}` is not dcr or cimd")),
    };
    let ip = match filters.ip.as_str() {
        "" => None,
        text => Some(
            text.parse::<std::net::IpAddr>()
                .map_err(|_| format!("`{text}` is not an IP address"))?
                .to_string(),
        ),
    };
    let page_token = match page_token {
        "" => None,
        text => {
            Some(ulid::Ulid::from_string(text).map_err(|_| "the page link is broken".to_owned())?)
        }
    };
    Ok(DecisionQuery {
        tenant: non_empty(&filters.tenant),
        client_id: non_empty(&filters.client),
        ip,
        fingerprint: non_empty(&filters.fingerprint),
        decision,
        registration_type,
        since_ms: instant(&filters.since, now, "since")?,
        until_ms: instant(&filters.until, now, "until")?,
        page_size: PAGE_ROWS,
        page_token,
    })
}

/// `1h`, `30m`, `7d` before `now`, or an RFC 3339 time, in milliseconds.
pub fn instant(text: &str, now: SystemTime, name: &str) -> Result<Option<u64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(ago) = crate::vocab::parse_age(text) {
        return Ok(Some(millis(now).saturating_sub(ago.as_millis() as u64)));
    }
    crate::signals::rfc3339::parse(text)
        .map(|time| Some(millis(time)))
        .ok_or_else(|| {
            format!("`{name}`: `{text}` is neither a time (RFC 3339) nor an age such as 1h")
        })
}

async fn decision(State(shared): Shared_, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&shared, &headers) else {
        return see_other("/console/sign-in");
    };
    if !is_id(&id) {
        return text(StatusCode::NOT_FOUND, "no such decision\n");
    }
    let store = shared.console.engine.store().clone();
    let wanted = id.clone();
    let title = format!("Decision {id}");
    match tokio::task::spawn_blocking(move || store.get_decision(&wanted)).await {
        Ok(Ok(Some(record))) => page(&session, &title, &pages::decision(&record)),
        Ok(Ok(None)) => {
            let mut response = page(&session, &title, &pages::problem("No such decision."));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
        Ok(Err(error)) => page(&session, &title, &pages::problem(&error.to_string())),
        Err(error) => page(&session, &title, &pages::problem(&error.to_string())),
    }
}

async fn policies(State(shared): Shared_, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&shared, &headers) else {
        return see_other("/console/sign-in");
    };
    let console = &shared.console;
    let policies = console.engine.policies();
    let shadow = console.engine.shadow();
    let status = console.reloader.status();
    let store = console.engine.store().clone();
    let disagreements = tokio::task::spawn_blocking(move || store.list_disagreements(50, None))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|page| page.disagreements)
        .unwrap_or_default();
    let problems = status
        .last_errors
        .iter()
        .map(|problem| {
            let line = (problem.line > 0)
                .then(|| std::fs::read_to_string(&problem.file).ok())
                .flatten()
                .and_then(|text| text.lines().nth(problem.line - 1).map(str::to_owned));
            (
                problem.file.display().to_string(),
                problem.line,
                problem.message.clone(),
                line,
            )
        })
        .collect();
    let view = pages::PolicyView {
        version: &policies.version,
        policy_count: policies.policy_count(),
        loaded_at: status.loaded_at.map(|at| pages::time(millis(at))),
        shadow_version: shadow.as_ref().map(|shadow| shadow.version.as_str()),
        refused_at: status.last_error_at.map(|at| pages::time(millis(at))),
        problems,
        disagreements: &disagreements,
    };
    page(&session, "Policies", &pages::policies(&view))
}

async fn read_form(body: Body) -> Result<Vec<(String, String)>, Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n"))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn peer(request: &Request) -> Option<String> {
    gate::peer_of(request.extensions())
}

fn page(session: &Session, title: &str, body: &str) -> Response {
    html(
        StatusCode::OK,
        pages::layout(title, &session.identity, &session.csrf, body),
    )
}

/// An HTML answer with the headers a page that approves registrations should carry.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut response = (status, body.to_owned()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn forbidden() -> Response {
    text(
        StatusCode::FORBIDDEN,
        "refused: sign in again (the form's CSRF token or the session is missing or wrong)\n",
    )
}

fn see_other(location: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    response
}

/// 303 to a path made of checked parts (`is_id`).
fn see_other_to(location: String) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad location\n"),
    }
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_filter_decisions() {
        let now = crate::vocab::from_millis(10_000_000);
        assert_eq!(
            instant("1h", now, "since"),
            Ok(Some(10_000_000 - 3_600_000))
        );
        assert_eq!(instant("", now, "since"), Ok(None));
        assert!(
            instant("yesterday", now, "since")
                .unwrap_err()
                .contains("`since`")
        );
    }
}
