//! Where CIMD documents come from: the cache, or one fetch shared by every concurrent
//! caller for the same client_id. Only valid documents are cached (rule 59); a document
//! that turns invalid on revalidation is evicted (C36).

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
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Revalidated => "revalidated",
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

/// Resolves client_ids through the cache and the fetcher.
pub struct CimdSource {
    fetcher: Fetcher,
    store: Arc<dyn Store>,
    bounds: CacheBounds,
    in_flight: Mutex<HashMap<String, Flight>>,
}

impl CimdSource {
    /// Forgets the cached document for `client_id`; a failure to forget is logged (the
    /// document is validated again on every use, so a stale entry is never trusted).
    fn forget(&self, client_id: &str) {
        if let Err(error) = self.store.evict_document(client_id) {
            tracing::warn!(%error, client_id, "cannot evict a CIMD document from the cache");
        }
    }

    pub fn new(fetcher: Fetcher, store: Arc<dyn Store>, bounds: CacheBounds) -> CimdSource {
        CimdSource {
            fetcher,
            store,
            bounds,
            in_flight: Mutex::new(HashMap::new()),
        }
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
            && entry.is_fresh(millis(now))
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
                },
            };
        }
        let validators = cached
            .as_ref()
            .map(|entry| Validators {
                etag: entry.etag.clone(),
                last_modified: entry.last_modified.clone(),
            })
            .unwrap_or_default();
        match self.fetcher.fetch(url, &validators).await {
            Err(failure) => DocumentResolution::Failed(failure),
            Ok(Fetched::NotModified { headers }) => match cached {
                Some(entry) => self.store_valid(
                    entry.body,
                    entry.content_type,
                    headers,
                    client_id,
                    rules,
                    now,
                    CacheStatus::Revalidated,
                ),
                None => DocumentResolution::Failed(FetchFailure {
                    code: Code::Unexpected304,
                    message: format!("`{client_id}` answered 304 with nothing cached"),
                }),
            },
            Ok(Fetched::Document { body, headers }) => {
                let content_type = headers.content_type.clone();
                self.store_valid(
                    body,
                    content_type,
                    headers,
                    client_id,
                    rules,
                    now,
                    CacheStatus::Miss,
                )
            }
        }
    }

    /// Validates a fetched (or revalidated) document; caches it when it is valid and the
    /// headers allow, evicts any older copy when it is not.
    #[allow(clippy::too_many_arguments)]
    fn store_valid(
        &self,
        body: Vec<u8>,
        content_type: Option<String>,
        headers: ResponseHeaders,
        client_id: &str,
        rules: &DocumentRules,
        now: SystemTime,
        status: CacheStatus,
    ) -> DocumentResolution {
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
            },
        }
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
        },
    }
}
