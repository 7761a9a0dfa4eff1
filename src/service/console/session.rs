//! Console sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
//! under TLS), the signed-in identity and a per-session CSRF token that every form posts
//! back. Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cg_session";
/// The cookie that carries the sign-in form's CSRF token before there is a session.
pub const SIGN_IN_COOKIE: &str = "cg_sign_in";
/// Sessions open at once at most; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who signed in: the token's name or the certificate's subject.
    pub identity: String,
    pub csrf: String,
    expires: Instant,
}

pub struct Sessions {
    ttl: Duration,
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session for `identity`; returns its id (the cookie value).
    pub fn open(&self, identity: &str) -> Result<String, RandomError> {
        let id = random_token()?;
        let session = Session {
            identity: identity.to_owned(),
            csrf: random_token()?,
            expires: Instant::now() + self.ttl,
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        open.retain(|_, session| session.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), session);
        Ok(id)
    }

    /// The live session of cookie value `id`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(id)
            .filter(|session| session.expires > Instant::now())
            .cloned()
    }

    pub fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system's random number generator failed")]
pub struct RandomError;

/// 32 random bytes, base64url.
pub fn random_token() -> Result<String, RandomError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Equality in time independent of where two tokens differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |difference, (x, y)| difference | (x ^ y))
            == 0
}

/// The value of cookie `name` in a `Cookie` header (`secure`: the console is served over
/// TLS, where its cookies carry the `__Host-` prefix).
pub fn cookie<'a>(header: &'a str, name: &str, secure: bool) -> Option<&'a str> {
    let prefix = if secure { HOST_PREFIX } else { "" };
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key.strip_prefix(prefix) == Some(name)).then_some(value)
    })
}

/// Under TLS a console cookie is named `__Host-<name>`: a browser then accepts it only
/// `Secure`, for `Path=/` and without `Domain`, so that no sibling subdomain or plain-HTTP
/// page can set (and so fix) the session or sign-in cookie.
const HOST_PREFIX: &str = "__Host-";

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`; over TLS `__Host-` prefixed,
/// `Secure`, `Path=/`; over plain HTTP (loopback trials) `Path=/console`. `max_age` 0
/// removes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    let max_age = max_age.as_secs();
    match secure {
        true => format!(
            "{HOST_PREFIX}{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}; Secure"
        ),
        false => {
            format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_is_closed() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.open("alice").unwrap();
        let session = sessions.get(&id).expect("open");
        assert_eq!(session.identity, "alice");
        assert_ne!(session.csrf, id, "the CSRF token is not the session id");
        assert!(sessions.get("forged").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn an_expired_session_is_gone() {
        let sessions = Sessions::new(Duration::ZERO);
        let id = sessions.open("alice").unwrap();
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_under_tls() {
        let value = set_cookie(SESSION_COOKIE, "abc", Duration::from_secs(5), true);
        assert!(
            value.starts_with("__Host-cg_session=abc; Path=/;"),
            "under TLS a host-only cookie for the whole origin: {value}"
        );
        assert_eq!(
            value,
            "__Host-cg_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=5; Secure"
        );
        assert_eq!(
            set_cookie(SESSION_COOKIE, "abc", Duration::ZERO, false),
            "cg_session=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        assert_eq!(
            cookie("a=1; cg_session=xyz; b=2", SESSION_COOKIE, false),
            Some("xyz")
        );
        assert_eq!(cookie("cg_session_x=1", SESSION_COOKIE, false), None);
        assert_eq!(
            cookie("a=1; __Host-cg_session=xyz", SESSION_COOKIE, true),
            Some("xyz")
        );
        assert_eq!(
            cookie("cg_session=planted", SESSION_COOKIE, true),
            None,
            "under TLS a cookie without the prefix (settable from a sibling host) is ignored"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
