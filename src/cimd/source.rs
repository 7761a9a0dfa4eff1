//! Where CIMD documents come from: the cache, or one fetch shared by every concurrent
//! caller for the same client_id. Only valid documents are cached (rule 59); a document
//! that turns invalid on revalidation is evicted (C36).
//!
//! A failure is not a document, but it is remembered (F-6): a URL whose fetch failed, or
//! whose document was invalid, is not fetched again until a backoff has passed (5 s,
//! doubling to 5 min), so clientgate is not a 1:1 reflector toward a victim host. And while
//! a refetch fails for a transient reason (no answer, no connection, 5xx, busy), the last
//! good document keeps serving, as `stale`, for up to `cimd.cache_max_secs` past its expiry
//! (CIMD WG issue #77).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use url::Url;

use super::cache::{CacheBounds, Freshness, freshness};
use super::document::{DocumentRules, validate_document};
use super::fetch::{
    FetchFailure, Fetched, Fetcher, ResponseHeaders, Validators, is_json_media_type,
};
use crate::registration::dcr::Validation;
use crate::registration::findings::Finding;
use crate::registration::{Code, profile};
use crate::store::CacheEntry;
use crate::store::Store;
use crate::vocab::millis;

/// Where the document of a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Revalidated,
    /// The cached document past its expiry, served because refetching it failed for a
    /// transient reason.
    Stale,
    /// The document the operator pinned in the known-clients registry: not fetched.
    Pinned,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Stale => "stale",
            CacheStatus::Pinned => "pinned",
        }
    }
}

/// The cache facts of a decision's document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CimdInfo {
    pub cache: CacheStatus,
    pub fetched_at_ms: u64,
    /// When the document must be revalidated; equal to `fetched_at_ms` when it was not
    /// cached (`no-store`) or must be revalidated before every use (`no-cache`).
    pub expires_at_ms: u64,
    pub document_sha256: String,
    /// The watched members in which this document differs from the one the tenant last
    /// approved for this client_id (`cimd::changes`); set by the engine, empty when nothing
    /// changed or the tenant never approved one.
    pub changed_members: Vec<String>,
}

/// The outcome of resolving a client_id to its document.
#[derive(Clone, Debug)]
pub enum DocumentResolution {
    Valid {
        validation: Validation,
        info: CimdInfo,
    },
    /// Fetched but invalid: never cached.
    Invalid { validation: Validation },
    /// Not fetched, or the fetch failed: never cached.
    Failed(FetchFailure),
}

type Flight = Arc<OnceCell<DocumentResolution>>;

/// The first backoff after a failure unless configured (`cimd.failure_backoff_ms`); it
/// doubles with each failure in a row.
pub const DEFAULT_FAILURE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest backoff.
const RETRY_MAX_MS: u64 = 300_000;
/// Failing URLs remembered at most; the oldest are forgotten first.
const REMEMBERED_MAX: usize = 10_000;

/// How long after its `failures`-th failure in a row a URL is not fetched again, when the
/// first backoff is `first_ms`: doubling, at most five minutes (and never, when `first_ms`
/// is 0: failures are not remembered).
pub fn retry_after_ms(first_ms: u64, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    first_ms
        .saturating_mul(1 << doublings)
        .min(RETRY_MAX_MS.max(first_ms))
}

/// A URL whose last fetch failed: what it gave, how many times in a row, until when it is
/// not fetched again.
#[derive(Clone, Debug)]
struct Remembered {
    resolution: DocumentResolution,
    failures: u32,
    retry_at_ms: u64,
}

/// Resolves client_ids through the cache and the fetcher.
pub struct CimdSource {
    fetcher: Fetcher,
    store: Arc<dyn Store>,
    bounds: CacheBounds,
    in_flight: Mutex<HashMap<String, Flight>>,
    failing: Mutex<HashMap<String, Remembered>>,
    failure_backoff_ms: u64,
}

impl CimdSource {
    /// Forgets the cached document for `client_id`; a failure to forget is logged (the
    /// document is validated again on every use, so a stale entry is never trusted).
    fn forget(&self, client_id: &str) {
        if let Err(error) = self.store.evict_document(client_id) {
            tracing::warn!(%error, client_id, "cannot evict a CIMD document from the cache");
        }
    }

    /// A source over `fetcher` and the store's cache; a failed URL is not fetched again for
    /// `failure_backoff` (doubling with each failure in a row; zero: always fetched).
    pub fn new(
        fetcher: Fetcher,
        store: Arc<dyn Store>,
        bounds: CacheBounds,
        failure_backoff: std::time::Duration,
    ) -> CimdSource {
        CimdSource {
            fetcher,
            store,
            bounds,
            in_flight: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            failure_backoff_ms: failure_backoff.as_millis() as u64,
        }
    }

    fn lock_failing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        match self.failing.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Remembers that `client_id` failed with `resolution` at `now_ms`.
    fn remember_failure(&self, client_id: &str, resolution: &DocumentResolution, now_ms: u64) {
        if self.failure_backoff_ms == 0 {
            return;
        }
        let mut failing = self.lock_failing();
        let failures = failing
            .get(client_id)
            .map_or(1, |earlier| earlier.failures.saturating_add(1));
        if failing.len() >= REMEMBERED_MAX && !failing.contains_key(client_id) {
            failing.retain(|_, remembered| remembered.retry_at_ms > now_ms);
            if failing.len() >= REMEMBERED_MAX
                && let Some(oldest) = failing
                    .iter()
                    .min_by_key(|(_, remembered)| remembered.retry_at_ms)
                    .map(|(key, _)| key.clone())
            {
                failing.remove(&oldest);
            }
        }
        failing.insert(
            client_id.to_owned(),
            Remembered {
                resolution: resolution.clone(),
                failures,
                retry_at_ms: now_ms + retry_after_ms(self.failure_backoff_ms, failures),
            },
        );
    }

    /// The remembered failure of `client_id`, while its backoff lasts.
    fn remembered(&self, client_id: &str, now_ms: u64) -> Option<Remembered> {
        self.lock_failing()
            .get(client_id)
            .filter(|remembered| remembered.retry_at_ms > now_ms)
            .cloned()
    }

    /// The last good document of `client_id` served past its expiry, when the failure is
    /// transient and the document is no older than the cache's upper bound past expiry.
    fn stale(
        &self,
        cached: Option<&CacheEntry>,
        failure: &FetchFailure,
        client_id: &str,
        rules: &DocumentRules,
        now_ms: u64,
    ) -> Option<DocumentResolution> {
        let entry = cached?;
        let bound_ms = self.bounds.max.as_millis() as u64;
        if !failure.transient || now_ms > entry.expires_at_ms.saturating_add(bound_ms) {
            return None;
        }
        let validation =
            validate_served(&entry.body, entry.content_type.as_deref(), client_id, rules);
        if validation.has_errors() {
            return None;
        }
        tracing::info!(client_id, failure = %failure.message, "serving the last good CIMD document");
        Some(DocumentResolution::Valid {
            validation,
            info: CimdInfo {
                cache: CacheStatus::Stale,
                fetched_at_ms: entry.fetched_at_ms,
                expires_at_ms: entry.expires_at_ms,
                document_sha256: entry.document_sha256.clone(),
                changed_members: Vec::new(),
            },
        })
    }

    /// The document of `url` under `rules`. Concurrent calls for one URL share one
    /// resolution, and so at most one fetch.
    pub async fn resolve(&self, url: &Url, rules: &DocumentRules) -> DocumentResolution {
        let key = url.as_str().to_owned();
        let flight = {
            let mut in_flight = self.lock_in_flight();
            in_flight.entry(key.clone()).or_default().clone()
        };
        let resolution = flight
            .get_or_init(|| self.resolve_alone(url, rules))
            .await
            .clone();
        let mut in_flight = self.lock_in_flight();
        if in_flight
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, &flight))
        {
            in_flight.remove(&key);
        }
        resolution
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        match self.in_flight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    async fn resolve_alone(&self, url: &Url, rules: &DocumentRules) -> DocumentResolution {
        let client_id = url.as_str();
        let now = SystemTime::now();
        // A cache that cannot be read is a cache miss, not a failure: fetching rebuilds it.
        let cached = match self.store.cached_document(client_id) {
            Ok(cached) => cached,
            Err(error) => {
                tracing::warn!(%error, client_id, "the cached CIMD document cannot be read; fetching");
                None
            }
        };
        if let Some(entry) = &cached
            && entry.is_fresh(millis(now), self.bounds.refresh.as_millis() as u64)
        {
            let validation =
                validate_served(&entry.body, entry.content_type.as_deref(), client_id, rules);
            if validation.has_errors() {
                self.forget(client_id);
                return DocumentResolution::Invalid { validation };
            }
            return DocumentResolution::Valid {
                validation,
                info: CimdInfo {
                    cache: CacheStatus::Hit,
                    fetched_at_ms: entry.fetched_at_ms,
                    expires_at_ms: entry.expires_at_ms,
                    document_sha256: entry.document_sha256.clone(),
                    changed_members: Vec::new(),
                },
            };
        }
        let now_ms = millis(now);
        if let Some(remembered) = self.remembered(client_id, now_ms) {
            if let DocumentResolution::Failed(failure) = &remembered.resolution
                && let Some(stale) = self.stale(cached.as_ref(), failure, client_id, rules, now_ms)
            {
                return stale;
            }
            return remembered_again(remembered, now_ms);
        }
        let validators = cached
            .as_ref()
            .map(|entry| Validators {
                etag: entry.etag.clone(),
                last_modified: entry.last_modified.clone(),
            })
            .unwrap_or_default();
        let resolution = self
            .fetch_and_store(url, &validators, cached.clone(), rules, now)
            .await;
        match &resolution {
            DocumentResolution::Valid { .. } => {
                self.lock_failing().remove(client_id);
                resolution
            }
            DocumentResolution::Failed(failure) => {
                self.remember_failure(client_id, &resolution, now_ms);
                self.stale(cached.as_ref(), failure, client_id, rules, now_ms)
                    .unwrap_or(resolution)
            }
            DocumentResolution::Invalid { .. } => {
                self.remember_failure(client_id, &resolution, now_ms);
                resolution
            }
        }
    }

    async fn fetch_and_store(
        &self,
        url: &Url,
        validators: &Validators,
        cached: Option<CacheEntry>,
        rules: &DocumentRules,
        now: SystemTime,
    ) -> DocumentResolution {
        let client_id = url.as_str();
        match self.fetcher.fetch(url, validators).await {
            Err(failure) => DocumentResolution::Failed(failure),
            Ok(Fetched::NotModified { headers }) => match cached {
                Some(entry) => self.store_valid(
                    entry.body,
                    entry.content_type,
                    headers,
                    Served {
                        client_id,
                        rules,
                        now,
                        status: CacheStatus::Revalidated,
                    },
                ),
                None => DocumentResolution::Failed(FetchFailure::new(
                    Code::Unexpected304,
                    format!("`{client_id}` answered 304 with nothing cached"),
                )),
            },
            Ok(Fetched::Document { body, headers }) => {
                let content_type = headers.content_type.clone();
                self.store_valid(
                    body,
                    content_type,
                    headers,
                    Served {
                        client_id,
                        rules,
                        now,
                        status: CacheStatus::Miss,
                    },
                )
            }
        }
    }

    /// Validates a fetched (or revalidated) document; caches it when it is valid and the
    /// headers allow, evicts any older copy when it is not.
    fn store_valid(
        &self,
        body: Vec<u8>,
        content_type: Option<String>,
        headers: ResponseHeaders,
        served: Served<'_>,
    ) -> DocumentResolution {
        let Served {
            client_id,
            rules,
            now,
            status,
        } = served;
        let validation = validate_served(&body, content_type.as_deref(), client_id, rules);
        if validation.has_errors() {
            self.forget(client_id);
            return DocumentResolution::Invalid { validation };
        }
        let fetched_at_ms = millis(now);
        let document_sha256 = hex::encode(Sha256::digest(&body));
        let (expires_at_ms, keep, revalidate_always) = match freshness(&headers, now, self.bounds) {
            Freshness::NoStore => (fetched_at_ms, false, false),
            Freshness::Revalidate => (fetched_at_ms, true, true),
            Freshness::For(lifetime) => (millis(now + lifetime), true, false),
        };
        if keep {
            let entry = CacheEntry {
                client_id: client_id.to_owned(),
                body,
                document_sha256: document_sha256.clone(),
                content_type,
                fetched_at_ms,
                expires_at_ms,
                revalidate_always,
                etag: headers.etag,
                last_modified: headers.last_modified,
            };
            if let Err(error) = self.store.cache_document(&entry) {
                tracing::warn!(%error, client_id, "cannot cache a CIMD document");
            }
        } else {
            self.forget(client_id);
        }
        DocumentResolution::Valid {
            validation,
            info: CimdInfo {
                cache: status,
                fetched_at_ms,
                expires_at_ms,
                document_sha256,
                changed_members: Vec::new(),
            },
        }
    }
}

/// Where a fetched document came from, for [`CimdSource::store_valid`].
struct Served<'a> {
    client_id: &'a str,
    rules: &'a DocumentRules,
    now: SystemTime,
    status: CacheStatus,
}

/// A remembered failure given again, saying so: the same finding, not fetched this time.
fn remembered_again(remembered: Remembered, now_ms: u64) -> DocumentResolution {
    let wait_secs = remembered.retry_at_ms.saturating_sub(now_ms).div_ceil(1000);
    let note = format!(
        " (failed {} time(s) in a row; not fetched again for {wait_secs} s)",
        remembered.failures
    );
    match remembered.resolution {
        DocumentResolution::Failed(mut failure) => {
            failure.message.push_str(&note);
            DocumentResolution::Failed(failure)
        }
        other => other,
    }
}

/// The document rules plus the media type (rule 25, B20).
pub fn validate_served(
    body: &[u8],
    content_type: Option<&str>,
    client_id: &str,
    rules: &DocumentRules,
) -> Validation {
    let mut validation = validate_document(body, client_id, rules);
    if !is_json_media_type(content_type)
        && let Some(severity) = profile::severity(Code::BadMediaType, rules.profile)
    {
        validation.findings.push(Finding {
            code: Code::BadMediaType,
            severity,
            field: String::new(),
            message: format!(
                "the document is served as `{}`, not JSON",
                content_type.unwrap_or("(no content type)")
            ),
        });
    }
    validation
}

/// A resolution of a document the operator pinned (`known_clients::Pin::Document`): says so.
pub fn pinned(mut resolution: DocumentResolution) -> DocumentResolution {
    if let DocumentResolution::Valid { info, .. } = &mut resolution {
        info.cache = CacheStatus::Pinned;
    }
    resolution
}

/// A fetched (or cached) document held to the SHA-256 the operator pinned: another
/// document is refused with a finding, never a silent switch.
pub fn held_to_pin(
    resolution: DocumentResolution,
    expected_sha256: &str,
    profile: crate::registration::Profile,
) -> DocumentResolution {
    let DocumentResolution::Valid {
        mut validation,
        info,
    } = resolution
    else {
        return resolution;
    };
    if info.document_sha256 == expected_sha256 {
        return DocumentResolution::Valid { validation, info };
    }
    let mut findings = crate::registration::findings::FindingList::new(profile);
    findings.report(
        Code::PinnedDocumentMismatch,
        "client_id",
        format!(
            "the document served has SHA-256 {}, not {expected_sha256}, which the known-clients registry pins",
            info.document_sha256
        ),
    );
    validation.findings.extend(findings.into_vec());
    DocumentResolution::Invalid { validation }
}

/// A document supplied by hand (offline evaluation, policy tests) resolved as a fetch
/// would be: valid or invalid by the same rules, never cached.
pub fn resolve_supplied(
    body: &[u8],
    client_id: &str,
    rules: &DocumentRules,
    now_ms: u64,
) -> DocumentResolution {
    let validation = validate_served(body, Some("application/json"), client_id, rules);
    if validation.has_errors() {
        return DocumentResolution::Invalid { validation };
    }
    DocumentResolution::Valid {
        validation,
        info: CimdInfo {
            cache: CacheStatus::Miss,
            fetched_at_ms: now_ms,
            expires_at_ms: now_ms,
            document_sha256: hex::encode(sha2::Sha256::digest(body)),
            changed_members: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_url_waits_longer_after_each_failure_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=9)
            .map(|failures| retry_after_ms(5_000, failures))
            .collect();
        assert_eq!(
            waits,
            vec![
                5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000
            ]
        );
        assert_eq!(retry_after_ms(5_000, u32::MAX), 300_000, "no overflow");
        assert_eq!(retry_after_ms(0, 3), 0, "zero: failures are not remembered");
    }
}
