//! How long a fetched document may be reused (rules 59–62; Q16): HTTP cache headers
//! (RFC 9111: `Cache-Control` `no-store`, `no-cache`, `max-age`, `Expires`, `Age`), clamped
//! to configured bounds. Pure: headers and the clock in, a verdict out.

use std::time::{Duration, SystemTime};

use super::fetch::ResponseHeaders;

/// The configured bounds on freshness (default 5 min – 24 h), and how often a document in
/// use is fetched again however fresh it is (default 1 h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheBounds {
    pub min: Duration,
    pub max: Duration,
    pub refresh: Duration,
}

impl Default for CacheBounds {
    fn default() -> CacheBounds {
        CacheBounds {
            min: Duration::from_secs(300),
            max: Duration::from_secs(86_400),
            refresh: Duration::from_secs(3_600),
        }
    }
}

/// What the headers allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// `no-store`: use this once, keep nothing.
    NoStore,
    /// `no-cache`: keep it, but revalidate before every reuse.
    Revalidate,
    /// Reusable without asking for this long.
    For(Duration),
}

/// The freshness lifetime of a response received at `now`.
pub fn freshness(headers: &ResponseHeaders, now: SystemTime, bounds: CacheBounds) -> Freshness {
    let directives: Vec<String> = headers
        .cache_control
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|directive| directive.trim().to_ascii_lowercase())
        .collect();
    if directives.iter().any(|d| d == "no-store") {
        return Freshness::NoStore;
    }
    if directives.iter().any(|d| d == "no-cache") {
        return Freshness::Revalidate;
    }
    let age = headers
        .age
        .as_deref()
        .and_then(|age| age.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let max_age = directives.iter().find_map(|d| {
        d.strip_prefix("max-age=")
            .and_then(|seconds| seconds.trim_matches('"').parse::<u64>().ok())
    });
    let lifetime = match max_age {
        Some(seconds) => Some(Duration::from_secs(seconds).saturating_sub(age)),
        None => headers.expires.as_deref().and_then(|expires| {
            let expires = httpdate::parse_http_date(expires).ok()?;
            let date = headers
                .date
                .as_deref()
                .and_then(|date| httpdate::parse_http_date(date).ok())
                .unwrap_or(now);
            // An unparsable or past Expires means already stale (RFC 9111 §5.3).
            Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
        }),
    };
    Freshness::For(lifetime.unwrap_or(bounds.min).clamp(bounds.min, bounds.max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(
        cache_control: Option<&str>,
        expires: Option<&str>,
        date: Option<&str>,
    ) -> ResponseHeaders {
        ResponseHeaders {
            cache_control: cache_control.map(str::to_owned),
            expires: expires.map(str::to_owned),
            date: date.map(str::to_owned),
            ..ResponseHeaders::default()
        }
    }

    fn fresh_for(headers: &ResponseHeaders) -> Freshness {
        freshness(
            headers,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            CacheBounds::default(),
        )
    }

    #[test]
    fn rule_61_max_age_is_followed_within_bounds() {
        assert_eq!(
            fresh_for(&headers(Some("public, max-age=3600"), None, None)),
            Freshness::For(Duration::from_secs(3600))
        );
    }

    #[test]
    fn rule_62_max_age_is_clamped_to_the_bounds() {
        assert_eq!(
            fresh_for(&headers(Some("max-age=5"), None, None)),
            Freshness::For(Duration::from_secs(300))
        );
        assert_eq!(
            fresh_for(&headers(Some("max-age=9999999"), None, None)),
            Freshness::For(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn age_is_subtracted_from_max_age() {
        let mut aged = headers(Some("max-age=3600"), None, None);
        aged.age = Some("600".to_owned());
        assert_eq!(fresh_for(&aged), Freshness::For(Duration::from_secs(3000)));
    }

    #[test]
    fn no_store_and_no_cache() {
        assert_eq!(
            fresh_for(&headers(Some("no-store"), None, None)),
            Freshness::NoStore
        );
        assert_eq!(
            fresh_for(&headers(Some("No-Cache, max-age=60"), None, None)),
            Freshness::Revalidate
        );
    }

    #[test]
    fn expires_counts_from_the_date_header() {
        let h = headers(
            None,
            Some("Thu, 01 Jan 2026 02:00:00 GMT"),
            Some("Thu, 01 Jan 2026 00:00:00 GMT"),
        );
        assert_eq!(fresh_for(&h), Freshness::For(Duration::from_secs(7200)));
    }

    #[test]
    fn no_headers_means_the_lower_bound() {
        assert_eq!(
            fresh_for(&headers(None, None, None)),
            Freshness::For(Duration::from_secs(300))
        );
    }
}
