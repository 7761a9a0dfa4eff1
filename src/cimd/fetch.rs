//! The SSRF-safe CIMD fetcher: the one part of clientgate that talks to the internet on
//! behalf of strangers (rules 14–28; vectors B1–B23).
//!
//! - https only, no proxy (proxy variables would bypass the resolver guard), no cookies, no
//!   credentials, no redirects followed (the `Location` is reported);
//! - every address a name resolves to is checked, one special-use record refuses the URL,
//!   and the connection goes only to the addresses that were checked (no DNS rebinding);
//!   IP-literal hosts, which never reach a resolver, are checked at URL level;
//! - only 200, or 304 in answer to our own conditional request;
//! - the decoded body is capped while it streams (an early refusal on `Content-Length`;
//!   compressed bombs stop at the cap), with connect and total timeouts;
//! - a global and a per-host concurrency limit, so one slow host cannot starve the rest.
//!
//! A refusal is a [`FetchFailure`] carrying a finding code, never a panic or a hang.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LOCATION,
};
use reqwest::redirect::Policy;
use tokio::sync::{OnceCell, Semaphore};
use url::Url;

use crate::address::AddressRules;
use crate::registration::Code;
use crate::registration::uri::registrable_domain;

/// The `Accept` header of every fetch (registration rules Q7).
pub const ACCEPT_VALUE: &str = "application/cimd+json, application/json";

/// Fetcher settings; see the `[cimd]` configuration section.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    /// Decoded bytes at most (5 KiB by default, registration rules Q18).
    pub max_bytes: usize,
    /// Fetches in flight at most, all hosts together.
    pub max_in_flight: usize,
    /// Fetches in flight at most to one host.
    pub max_in_flight_per_host: usize,
    /// Fetches in flight at most to the hosts of one registrable domain (F-6: a wildcard
    /// DNS name gives an attacker any number of hosts, not of domains).
    pub max_in_flight_per_domain: usize,
    /// How long a fetch may wait for its slots, apart from `total_timeout` (which starts
    /// once it has them): a fetch that cannot get one in time fails as busy.
    pub slot_wait: Duration,
    /// Ports a client_id may name; empty: any.
    pub allowed_ports: Vec<u16>,
    /// Which addresses are never connected to: the special-use set, `cimd.deny_cidrs`,
    /// and loopback unless the development switch `cimd.allow_loopback` is on.
    pub addresses: AddressRules,
    /// Development only: an extra PEM trust root.
    pub ca_file: Option<PathBuf>,
    /// Development only: connect to this address for this host name (like curl's
    /// `--resolve`), still subject to the special-use check.
    pub resolve: HashMap<String, SocketAddr>,
}

/// Validators of a cached document, for a conditional request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// What a successful fetch brought back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// 200: the document and the headers that govern caching.
    Document {
        body: Vec<u8>,
        headers: ResponseHeaders,
    },
    /// 304 to our conditional request: the cached document is still good.
    NotModified { headers: ResponseHeaders },
}

/// The response headers clientgate uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub date: Option<String>,
    pub age: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Why a fetch was refused or failed: a finding code and a short, stable message for
/// people (F-16: never a library's error chain, never more of a remote header than a
/// bound). `transient` failures (no answer in time, no connection, 5xx, 429, busy) may be
/// bridged by the last good document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchFailure {
    pub code: Code,
    pub message: String,
    pub transient: bool,
}

impl FetchFailure {
    pub fn new(code: Code, message: impl Into<String>) -> FetchFailure {
        FetchFailure {
            code,
            message: message.into(),
            transient: false,
        }
    }

    fn transient(code: Code, message: impl Into<String>) -> FetchFailure {
        FetchFailure {
            transient: true,
            ..FetchFailure::new(code, message)
        }
    }
}

/// The longest part of a remote `Location` header echoed in a finding.
const MAX_ECHOED_LOCATION: usize = 128;

/// Why `url`'s port is refused under `allowed` (empty: every port is allowed).
pub fn port_refusal(url: &Url, allowed: &[u16]) -> Option<String> {
    let port = url.port_or_known_default()?;
    (!allowed.is_empty() && !allowed.contains(&port)).then(|| {
        let allowed: Vec<String> = allowed.iter().map(u16::to_string).collect();
        format!(
            "port {port} is not one cimd.allowed_ports lets the fetcher reach ({})",
            allowed.join(", ")
        )
    })
}

/// Why the fetcher could not be built (a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    #[error("cannot read `cimd.ca_file` `{path}`: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
}

/// The resolver refused a name because of a special-use address.
#[derive(Debug)]
struct SpecialUseRefused(String);

impl std::fmt::Display for SpecialUseRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for SpecialUseRefused {}

/// Resolves names and refuses any answer with a special-use address. What it returns is
/// exactly what reqwest connects to, so the checked addresses are the connected ones.
struct GuardedResolver {
    pinned: HashMap<String, SocketAddr>,
    addresses: AddressRules,
    system: OnceCell<hickory_resolver::TokioResolver>,
}

/// Rule 22 / B6: one special-use record among the answers refuses the name.
fn check_answer(
    name: &str,
    ips: &[IpAddr],
    addresses: &AddressRules,
) -> Result<(), SpecialUseRefused> {
    for ip in ips {
        if let Some(refusal) = addresses.refusal(*ip) {
            return Err(SpecialUseRefused(format!("`{name}` resolves to {refusal}")));
        }
    }
    Ok(())
}

impl GuardedResolver {
    async fn lookup(
        &self,
        name: String,
    ) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
        if let Some(addr) = self.pinned.get(&name) {
            check_answer(&name, &[addr.ip()], &self.addresses)?;
            return Ok(vec![*addr]);
        }
        let resolver = self
            .system
            .get_or_try_init(|| async { hickory_resolver::Resolver::builder_tokio()?.build() })
            .await?;
        let answer = resolver.lookup_ip(name.as_str()).await?;
        let ips: Vec<IpAddr> = answer.iter().collect();
        check_answer(&name, &ips, &self.addresses)?;
        if ips.is_empty() {
            return Err(format!("`{name}` has no addresses").into());
        }
        Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
    }
}

/// The resolver as reqwest holds it: every lookup shares one guard and one system resolver.
struct SharedResolver(Arc<GuardedResolver>);

impl reqwest::dns::Resolve for SharedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.0.clone();
        let name = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let addrs = this.lookup(name).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Fetches CIMD documents.
pub struct Fetcher {
    client: reqwest::Client,
    settings: FetchSettings,
    global: Arc<Semaphore>,
    per_host: Slots,
    per_domain: Slots,
}

/// Semaphores by key (a host, a registrable domain), each forgotten once nobody holds it.
struct Slots {
    each: usize,
    by_key: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Slots {
    fn new(each: usize) -> Slots {
        Slots {
            each,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn of(&self, key: &str) -> Arc<Semaphore> {
        let mut by_key = match self.by_key.lock() {
            Ok(by_key) => by_key,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Forget keys nobody is fetching from, so the map stays small.
        by_key.retain(|_, slots| Arc::strong_count(slots) > 1);
        by_key
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.each)))
            .clone()
    }
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> Result<Fetcher, FetcherError> {
        let resolver = GuardedResolver {
            pinned: settings
                .resolve
                .iter()
                .map(|(name, addr)| (name.to_ascii_lowercase(), *addr))
                .collect(),
            addresses: settings.addresses.clone(),
            system: OnceCell::new(),
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .https_only(true)
            .referer(false)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.total_timeout)
            .pool_max_idle_per_host(0)
            .user_agent(concat!(
                "clientgate/",
                env!("CARGO_PKG_VERSION"),
                " (CIMD fetcher)"
            ))
            .dns_resolver(Arc::new(SharedResolver(Arc::new(resolver))));
        if let Some(path) = &settings.ca_file {
            let ca_error = |message: String| FetcherError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|error| ca_error(error.to_string()))?;
            builder = builder.tls_certs_merge([certificate]);
        }
        let client = builder
            .build()
            .map_err(|error| FetcherError::Client(error_chain(&error)))?;
        Ok(Fetcher {
            client,
            global: Arc::new(Semaphore::new(settings.max_in_flight)),
            per_host: Slots::new(settings.max_in_flight_per_host),
            per_domain: Slots::new(settings.max_in_flight_per_domain),
            settings,
        })
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// Fetches `url`, conditionally when `validators` are given: first its slots (its
    /// registrable domain's, its host's, one of all) within `slot_wait`, then connecting
    /// and reading within `total_timeout`.
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchFailure> {
        if url.scheme() != "https" {
            return Err(FetchFailure::new(
                Code::NotHttps,
                format!("`{url}` is not https"),
            ));
        }
        if let Some(reason) = self.settings.addresses.url_refusal(url) {
            return Err(FetchFailure::new(
                Code::SpecialUseAddress,
                format!("`{url}` names a special-use address ({reason})"),
            ));
        }
        if let Some(reason) = port_refusal(url, &self.settings.allowed_ports) {
            return Err(FetchFailure::new(
                Code::PortNotAllowed,
                format!("`{url}`: {reason}"),
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let domain = registrable_domain(&host).unwrap_or_else(|| host.clone());
        // The domain's slot first, then the host's, then a global one: calls queued behind
        // one slow domain must not hold slots that other domains need.
        let (domain_slots, host_slots) = (self.per_domain.of(&domain), self.per_host.of(&host));
        let closed = |_| FetchFailure::new(Code::FetchFailed, "the fetcher is shutting down");
        let slots = async {
            let domain = domain_slots.acquire().await.map_err(closed)?;
            let host = host_slots.acquire().await.map_err(closed)?;
            let global = self.global.acquire().await.map_err(closed)?;
            Ok::<_, FetchFailure>((domain, host, global))
        };
        let wait = self.settings.slot_wait;
        let _slots = match tokio::time::timeout(wait, slots).await {
            Ok(slots) => slots?,
            Err(_) => {
                return Err(FetchFailure::transient(
                    Code::FetcherBusy,
                    format!(
                        "clientgate is fetching as many documents as it allows (from `{domain}`, or in all); \
                         no slot within {} ms",
                        wait.as_millis()
                    ),
                ));
            }
        };
        let total = self.settings.total_timeout;
        match tokio::time::timeout(total, self.fetch_now(url, validators)).await {
            Ok(result) => result,
            Err(_) => Err(FetchFailure::transient(
                Code::Timeout,
                format!("`{url}` did not answer within {} ms", total.as_millis()),
            )),
        }
    }

    async fn fetch_now(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchFailure> {
        let mut request = self.client.get(url.clone()).header(ACCEPT, ACCEPT_VALUE);
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, last_modified);
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| send_failure(url, &error))?;
        let status = response.status();
        let headers = response_headers(response.headers());
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return if validators.is_empty() {
                Err(FetchFailure::new(
                    Code::Unexpected304,
                    format!("`{url}` answered 304 to a request that was not conditional"),
                ))
            } else {
                Ok(Fetched::NotModified { headers })
            };
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("(none)");
            let location = crate::registration::findings::cut(
                location.escape_default().to_string(),
                MAX_ECHOED_LOCATION,
            );
            return Err(FetchFailure::new(
                Code::RedirectNotFollowed,
                format!("`{url}` answered {status} to `{location}`; redirects are never followed"),
            ));
        }
        if status != reqwest::StatusCode::OK {
            let code = if status.is_success() {
                Code::StatusNot200
            } else {
                Code::FetchFailed
            };
            let message = format!("`{url}` answered {status}; only 200 is accepted");
            let transient =
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                FetchFailure::transient(code, message)
            } else {
                FetchFailure::new(code, message)
            });
        }
        let max = self.settings.max_bytes;
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max as u64) {
            return Err(too_large(url, max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| read_failure(url, &error))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large(url, max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Document { body, headers })
    }
}

fn too_large(url: &Url, max: usize) -> FetchFailure {
    FetchFailure::new(
        Code::TooLarge,
        format!("the document at `{url}` is over the {max}-byte limit (decoded)"),
    )
}

/// A request that got no response, in one of a few stable words (F-16): the library's
/// error chain goes to the log only. A refused connection and one that timed out read the
/// same, so the answer is no port scanner.
fn send_failure(url: &Url, error: &reqwest::Error) -> FetchFailure {
    if let Some(refused) = find_source::<SpecialUseRefused>(error) {
        return FetchFailure::new(Code::SpecialUseAddress, format!("{refused}; not fetched"));
    }
    tracing::debug!(%url, error = %error_chain(error), "CIMD fetch failed");
    let host = url.host_str().unwrap_or_default();
    if error.is_connect() {
        return FetchFailure::transient(
            Code::FetchFailed,
            format!("`{host}` could not be reached"),
        );
    }
    if error.is_timeout() {
        return FetchFailure::transient(Code::Timeout, format!("`{url}` did not answer in time"));
    }
    let message = if find_source::<rustls::Error>(error).is_some() {
        format!("the TLS handshake with `{host}` failed")
    } else {
        format!("`{url}` could not be fetched")
    };
    FetchFailure::transient(Code::FetchFailed, message)
}

fn read_failure(url: &Url, error: &reqwest::Error) -> FetchFailure {
    tracing::debug!(%url, error = %error_chain(error), "reading a CIMD document failed");
    if error.is_timeout() {
        return FetchFailure::transient(Code::Timeout, format!("reading `{url}` timed out"));
    }
    FetchFailure::transient(Code::FetchFailed, format!("reading `{url}` failed"))
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        cause = inner.source();
    }
    message
}

fn response_headers(headers: &HeaderMap) -> ResponseHeaders {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    ResponseHeaders {
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        cache_control: get("cache-control"),
        expires: get("expires"),
        date: get("date"),
        age: get("age"),
        etag: get("etag"),
        last_modified: get("last-modified"),
    }
}

/// Rule 25 / Q7: `application/json` or any `application/*+json`, parameters ignored.
pub fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json") && subtype.len() > 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow_loopback: bool) -> AddressRules {
        AddressRules {
            allow_loopback,
            deny: Vec::new(),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn b6_one_special_use_record_refuses_the_name() {
        let answer = ips(&["93.184.216.34", "10.0.0.5"]);
        let refused = check_answer("app.example.com", &answer, &rules(false)).unwrap_err();
        assert!(refused.to_string().contains("10.0.0.5"), "{refused}");
        assert!(
            check_answer(
                "app.example.com",
                &ips(&["93.184.216.34", "2606:4700::1"]),
                &rules(false)
            )
            .is_ok()
        );
    }

    #[test]
    fn b5_embedded_loopback_records_are_refused() {
        assert!(check_answer("a.example", &ips(&["64:ff9b::7f00:1"]), &rules(false)).is_err());
        assert!(check_answer("a.example", &ips(&["2002:7f00:1::"]), &rules(false)).is_err());
    }

    #[test]
    fn allow_loopback_admits_loopback_records_only() {
        assert!(check_answer("a.example", &ips(&["127.0.0.1", "::1"]), &rules(true)).is_ok());
        assert!(
            check_answer(
                "a.example",
                &ips(&["127.0.0.1", "192.168.0.1"]),
                &rules(true)
            )
            .is_err()
        );
        assert!(check_answer("a.example", &ips(&["0.0.0.0"]), &rules(true)).is_err());
    }

    #[test]
    fn b20_b21_json_media_types() {
        assert!(is_json_media_type(Some("application/json")));
        assert!(is_json_media_type(Some("application/json; charset=utf-8")));
        assert!(is_json_media_type(Some("application/cimd+json")));
        assert!(is_json_media_type(Some("Application/vnd.example+JSON")));
        assert!(!is_json_media_type(Some("text/html")));
        assert!(!is_json_media_type(Some("application/+json")));
        assert!(!is_json_media_type(Some("text/json+html")));
        assert!(!is_json_media_type(None));
    }

    #[test]
    fn allowed_ports_refuse_every_other_port_and_an_empty_list_refuses_none() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert_eq!(port_refusal(&url("https://a.example/c.json"), &[443]), None);
        assert_eq!(
            port_refusal(&url("https://a.example:8443/c.json"), &[443]).as_deref(),
            Some("port 8443 is not one cimd.allowed_ports lets the fetcher reach (443)")
        );
        assert_eq!(
            port_refusal(&url("https://a.example:8443/c.json"), &[]),
            None
        );
    }
}
