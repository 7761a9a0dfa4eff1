//! Signing in and out of the console: the sign-in form and its own CSRF cookie, a token
//! or the client certificate checked for the `operator` role, the session cookie, and the
//! `Origin` check every POST passes.

use std::time::Instant;

use super::*;

/// The signed-in session of a request, if any.
pub(super) fn session_of(shared: &Shared, headers: &HeaderMap) -> Option<(String, Session)> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let id = session::cookie(cookies, SESSION_COOKIE, shared.console.tls)?;
    shared
        .sessions
        .get(id)
        .map(|session| (id.to_owned(), session))
}

/// `Origin` of another site (a browser sends it on every POST): refused, whatever the
/// cookies say. `Origin: null` (sent for privacy, e.g. by headless Chromium) names no site;
/// the CSRF token still has to match.
pub(super) fn cross_site(headers: &HeaderMap, uri: &http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    // HTTP/2 carries the host in `:authority` (the URI), HTTP/1.1 in `Host`.
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            uri.authority()
                .map(|authority| authority.as_str().to_owned())
        });
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return true;
    };
    if origin == "null" {
        return false;
    }
    origin
        .split_once("://")
        .is_none_or(|(_, authority)| authority != host)
}

pub(super) async fn sign_in_page(State(shared): Shared_, request: Request) -> Response {
    sign_in_form(&shared, &request, None, StatusCode::OK)
}

pub(super) fn sign_in_form(
    shared: &Shared,
    request: &Request,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let Ok(csrf) = session::random_token() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n");
    };
    let certificate = request
        .extensions()
        .get::<crate::service::listener::TlsPeer>()
        .is_some_and(|peer| peer.certificate.is_some());
    let open = shared.console.gate.is_open();
    let problem = problem.or(open.then_some(
        "The console needs credentials: configure [[auth.tokens]] (or [[auth.clients]]) with the operator role.",
    ));
    let mut response = html(status, pages::sign_in(&csrf, problem, certificate));
    set_cookie(
        &mut response,
        &session::set_cookie(
            SIGN_IN_COOKIE,
            &csrf,
            Duration::from_secs(3600),
            shared.console.tls,
        ),
    );
    response
}

pub(super) async fn sign_in(State(shared): Shared_, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = match read_form(body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let request = Request::from_parts(parts, Body::empty());
    let expected = request
        .headers()
        .get(header::COOKIE)
        .and_then(|cookies| cookies.to_str().ok())
        .and_then(|cookies| session::cookie(cookies, SIGN_IN_COOKIE, shared.console.tls))
        .map(str::to_owned);
    let posted = field(&form, "csrf");
    let refusal = if cross_site(request.headers(), request.uri()) {
        Some("posted from another site")
    } else if expected.is_none() {
        Some("no sign-in cookie")
    } else if !expected.is_some_and(|expected| session::same_token(&expected, posted)) {
        Some("the form's token is not the cookie's")
    } else {
        None
    };
    if let Some(refusal) = refusal {
        tracing::warn!(peer = ?peer(&request), refusal, origin = ?request.headers().get(header::ORIGIN), "console sign-in form refused");
        return sign_in_form(
            &shared,
            &request,
            Some("The sign-in form expired or came from elsewhere; try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let console = &shared.console;
    if console.gate.is_open() {
        return sign_in_form(&shared, &request, None, StatusCode::FORBIDDEN);
    }
    let source = throttle::Source::of(gate::peer_addr_of(request.extensions()).map(|a| a.ip()));
    if let Err(wait) = shared.sign_ins.check(source, Instant::now()) {
        tracing::warn!(peer = ?peer(&request), "console sign-in refused: too many failed sign-ins");
        let problem = format!(
            "Too many failed sign-ins from this address; try again in {} s.",
            wait.as_secs().max(1)
        );
        return sign_in_form(
            &shared,
            &request,
            Some(&problem),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let token = field(&form, "token").trim();
    let with_certificate = field(&form, "certificate") == "1";
    let token = (!with_certificate).then_some(token);
    if token == Some("") {
        return sign_in_form(
            &shared,
            &request,
            Some("Enter an operator token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let identity = match console.gate.admit_http(
        &HeaderMap::new(),
        request.extensions(),
        token,
        Role::Operator,
    ) {
        Ok(identity) => identity,
        Err(error) => {
            shared.sign_ins.failed(source, Instant::now());
            tracing::warn!(peer = ?peer(&request), %error, "console sign-in refused");
            return sign_in_form(
                &shared,
                &request,
                Some(&error.to_string()),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    shared.sign_ins.succeeded(source);
    let name = identity.name().unwrap_or("operator").to_owned();
    let Ok(id) = shared.sessions.open(&name) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no randomness\n");
    };
    tracing::info!(identity = %name, peer = ?peer(&request), "console sign-in");
    let mut response = see_other("/console/pending");
    set_cookie(
        &mut response,
        &session::set_cookie(SESSION_COOKIE, &id, shared.sessions.ttl(), console.tls),
    );
    set_cookie(
        &mut response,
        &session::set_cookie(SIGN_IN_COOKIE, "", Duration::ZERO, console.tls),
    );
    response
}

pub(super) async fn sign_out(State(shared): Shared_, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = match read_form(body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some((id, session)) = session_of(&shared, &parts.headers)
        && session::same_token(&session.csrf, field(&form, "csrf"))
        && !cross_site(&parts.headers, &parts.uri)
    {
        shared.sessions.close(&id);
    } else {
        return forbidden();
    }
    let mut response = see_other("/console/sign-in");
    set_cookie(
        &mut response,
        &session::set_cookie(SESSION_COOKIE, "", Duration::ZERO, shared.console.tls),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_site_is_cross_site() {
        let origin = |value: &'static str| HeaderValue::from_static(value);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, origin("127.0.0.1:8443"));
        let uri = http::Uri::from_static("/console/sign-in");
        assert!(
            !cross_site(&headers, &uri),
            "no Origin: a non-browser client"
        );
        headers.insert(header::ORIGIN, origin("https://127.0.0.1:8443"));
        assert!(!cross_site(&headers, &uri));
        headers.insert(header::ORIGIN, origin("https://evil.example"));
        assert!(cross_site(&headers, &uri));
        headers.remove(header::HOST);
        let h2 = http::Uri::from_static("https://127.0.0.1:8443/console/sign-in");
        assert!(
            cross_site(&headers, &h2),
            "over HTTP/2 the authority is compared"
        );
        headers.insert(header::ORIGIN, origin("https://127.0.0.1:8443"));
        assert!(!cross_site(&headers, &h2));
        assert!(
            cross_site(&headers, &uri),
            "no host to compare with: refused"
        );
    }
}
