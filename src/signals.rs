//! Signals: the facts about one registration that policies decide on, derived from the
//! validated metadata and the caller.
//!
//! Pure: the clock and the caller arrive as arguments. This module knows nothing of Cedar;
//! `policy::entities` turns [`Signals`] into Cedar entities and context.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::known_clients::Recognition;
use crate::registration::uri::{RedirectKind, registrable_domain};
use crate::registration::{Severity, Validation};
use crate::vocab::{Caller, RegistrationType};

/// A URI reduced to what policies compare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub uri: String,
    pub host: String,
    pub registrable_domain: Option<String>,
}

/// One redirect URI with its host, registrable domain and kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RedirectFacts {
    pub uri: String,
    pub scheme: String,
    pub host: String,
    pub registrable_domain: Option<String>,
    pub kind: RedirectKind,
}

/// Everything a decision sees about one registration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Signals {
    pub tenant: String,
    pub registration_type: RegistrationType,
    /// The CIMD client_id URL and its host; `None` for DCR.
    pub client_id: Option<HostFacts>,
    pub client_name: Option<String>,
    pub client_uri: Option<HostFacts>,
    pub redirects: Vec<RedirectFacts>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scopes: Vec<String>,
    pub application_type: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    /// The issuer of a verified software statement; `None` when none was verified.
    pub software_statement_issuer: Option<String>,
    pub contacts: Vec<String>,
    pub caller_ip: Option<IpAddr>,
    pub user_agent: String,
    pub user_authenticated: bool,
    pub initial_access_token: bool,
    #[serde(with = "rfc3339")]
    pub now: SystemTime,
    /// Codes of the warning findings, sorted, without repeats.
    pub warnings: Vec<String>,
    pub completed_challenges: Vec<String>,
    /// `hit`, `miss` or `revalidated` for a CIMD document; `None` for DCR.
    pub cimd_cache: Option<String>,
    /// Earlier registrations per dimension (`ip`, `domain`, `tenant`, `fingerprint`) and
    /// window (`1m`, `1h`, `24h`).
    pub rates: Vec<(String, Vec<(String, u64)>)>,
    /// Earlier approved registrations with the same fingerprint.
    pub duplicates: u64,
    #[serde(skip)]
    pub duplicate_first_seen: Option<SystemTime>,
    /// The known client it is (`known_clients`), and the one whose name it borrows.
    pub known_client: Option<String>,
    pub impersonates_known_client: Option<String>,
}

impl Signals {
    /// Every redirect URI goes to the user's own machine.
    pub fn loopback_only(&self) -> bool {
        !self.redirects.is_empty()
            && self
                .redirects
                .iter()
                .all(|r| r.kind == RedirectKind::Loopback)
    }

    /// The registrable domains of the redirect URIs other than `client_uri`'s (all of them
    /// when there is no `client_uri`), sorted, without repeats.
    pub fn foreign_redirect_domains(&self) -> Vec<&str> {
        let own = self
            .client_uri
            .as_ref()
            .and_then(|client_uri| client_uri.registrable_domain.as_deref());
        let mut foreign: Vec<&str> = self
            .redirects
            .iter()
            .filter_map(|r| r.registrable_domain.as_deref())
            .filter(|domain| Some(*domain) != own)
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        foreign
    }

    /// Every redirect URI is on the registrable domain of the CIMD client_id.
    pub fn redirects_on_client_id_domain(&self) -> bool {
        let Some(domain) = self
            .client_id
            .as_ref()
            .and_then(|c| c.registrable_domain.as_ref())
        else {
            return false;
        };
        !self.redirects.is_empty()
            && self
                .redirects
                .iter()
                .all(|r| r.registrable_domain.as_ref() == Some(domain))
    }
}

/// The request-level facts that accompany a validated registration.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub tenant: String,
    pub registration_type: RegistrationType,
    pub client_id: Option<String>,
    pub caller: Caller,
    pub initial_access_token: bool,
    pub completed_challenges: Vec<String>,
    pub cimd_cache: Option<String>,
    pub software_statement_issuer: Option<String>,
    pub rates: Vec<(String, Vec<(String, u64)>)>,
    pub duplicates: u64,
    pub duplicate_first_seen: Option<SystemTime>,
    /// What the known-clients registry made of the registration.
    pub recognition: Recognition,
    pub now: SystemTime,
}

/// Derives the signals of a validated registration.
pub fn derive_signals(validation: &Validation, request: RequestFacts) -> Signals {
    let metadata = &validation.metadata;
    let redirects = validation
        .redirects
        .iter()
        .map(|redirect| RedirectFacts {
            uri: redirect.uri.clone(),
            scheme: redirect.scheme.clone(),
            host: redirect.host.clone(),
            registrable_domain: registrable_domain(&redirect.host),
            kind: redirect.kind,
        })
        .collect();
    let mut warnings: Vec<String> = validation
        .findings
        .iter()
        .filter(|finding| finding.severity == Severity::Warning)
        .map(|finding| finding.code.as_str().to_owned())
        .collect();
    warnings.sort();
    warnings.dedup();
    Signals {
        tenant: request.tenant,
        registration_type: request.registration_type,
        client_id: request.client_id.as_deref().and_then(host_facts),
        client_name: metadata.client_name.clone(),
        client_uri: metadata.client_uri.as_deref().and_then(host_facts),
        redirects,
        grant_types: metadata.grant_types.clone(),
        response_types: metadata.response_types.clone(),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method.clone(),
        scopes: metadata.scopes(),
        application_type: metadata.application_type.clone(),
        software_id: metadata.software_id.clone(),
        software_version: metadata.software_version.clone(),
        software_statement_issuer: request.software_statement_issuer,
        contacts: metadata.contacts.clone(),
        caller_ip: request.caller.ip,
        user_agent: request.caller.user_agent,
        user_authenticated: request.caller.user_authenticated,
        initial_access_token: request.initial_access_token,
        now: request.now,
        warnings,
        completed_challenges: request.completed_challenges,
        cimd_cache: request.cimd_cache,
        rates: request.rates,
        duplicates: request.duplicates,
        duplicate_first_seen: request.duplicate_first_seen,
        known_client: request.recognition.known_client,
        impersonates_known_client: request.recognition.impersonates,
    }
}

fn host_facts(uri: &str) -> Option<HostFacts> {
    let url = url::Url::parse(uri).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some(HostFacts {
        uri: uri.to_owned(),
        registrable_domain: registrable_domain(&host),
        host,
    })
}

/// `SystemTime` as RFC 3339 UTC with millisecond precision, the form Cedar's `datetime`
/// accepts.
pub mod rfc3339 {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// `2026-12-01T10:00:00.123Z`.
    pub fn format(time: SystemTime) -> String {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        let days = millis.div_euclid(86_400_000);
        let in_day = millis.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000
        )
    }

    /// `2026-12-01T10:00:00Z`: to the second. Cedar's `datetime` constructor costs ~10 µs,
    /// so the decision path builds `context.now` once a second per thread instead of once
    /// per decision.
    pub fn format_seconds(time: SystemTime) -> String {
        let mut text = format(time);
        text.truncate(19);
        text.push('Z');
        text
    }

    /// `2026-12-01T10:00:00Z`, with optional fractional seconds and a `Z` or `±hh:mm`
    /// offset; `None` for anything else (or a time before 1970).
    pub fn parse(text: &str) -> Option<SystemTime> {
        let text = text.trim();
        let bytes = text.as_bytes();
        if bytes.len() < 20
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !matches!(bytes[10], b'T' | b't' | b' ')
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut millis = 0i64;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
            millis = padded.parse().ok()?;
            rest = &fraction[digits..];
        }
        let offset_minutes = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let hours: i64 = rest[1..3].parse().ok()?;
                let minutes: i64 = rest[4..6].parse().ok()?;
                sign * (hours * 60 + minutes)
            }
            _ => return None,
        };
        let days = days_from_civil(year, month as u32, day as u32);
        let total = ((days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60)
            * 1000)
            + millis;
        u64::try_from(total)
            .ok()
            .map(|ms| UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    /// Howard Hinnant's `days_from_civil`: a proleptic Gregorian date to days since 1970-01-01.
    fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
        let year = if month <= 2 { year - 1 } else { year };
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let month = i64::from(month);
        let doy =
            (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn serialize<S: serde::Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*time))
    }

    /// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian date.
    fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    #[cfg(test)]
    mod tests {
        use std::time::{Duration, UNIX_EPOCH};

        #[test]
        fn formats_known_instants() {
            assert_eq!(super::format(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
            let leap_day = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
            assert_eq!(super::format(leap_day), "2024-02-29T12:34:56.789Z");
            assert_eq!(super::format_seconds(leap_day), "2024-02-29T12:34:56Z");
            assert_eq!(
                super::parse(&super::format_seconds(leap_day)),
                Some(UNIX_EPOCH + Duration::from_secs(1_709_210_096))
            );
        }

        #[test]
        fn parses_what_it_formats_and_offsets() {
            let leap_day = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
            assert_eq!(super::parse("2024-02-29T12:34:56.789Z"), Some(leap_day));
            assert_eq!(
                super::parse("2024-02-29T14:34:56.789+02:00"),
                Some(leap_day),
                "an offset is subtracted"
            );
            assert_eq!(
                super::parse("2026-12-01T00:00:00Z"),
                Some(UNIX_EPOCH + Duration::from_secs(1_796_083_200))
            );
            for bad in [
                "2026-13-01T00:00:00Z",
                "2026-12-01",
                "2026-12-01T00:00:00",
                "1969-12-31T23:59:59Z",
            ] {
                assert_eq!(super::parse(bad), None, "{bad}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::{Profile, validate_dcr};

    fn signals_of(metadata: &str) -> Signals {
        let validation = validate_dcr(metadata, Profile::Mcp);
        derive_signals(
            &validation,
            RequestFacts {
                tenant: "default".into(),
                registration_type: RegistrationType::Dcr,
                client_id: None,
                caller: Caller::default(),
                initial_access_token: false,
                completed_challenges: Vec::new(),
                cimd_cache: None,
                software_statement_issuer: None,
                rates: Vec::new(),
                duplicates: 0,
                duplicate_first_seen: None,
                recognition: Default::default(),
                now: SystemTime::UNIX_EPOCH,
            },
        )
    }

    #[test]
    fn redirect_uris_get_host_registrable_domain_and_kind() {
        let signals = signals_of(
            r#"{"redirect_uris":["https://app.Example.co.uk/cb","http://127.0.0.1:8080/cb",
                "http://localhost/cb","com.example.app:/oauth"],"client_uri":"https://www.example.co.uk"}"#,
        );
        let facts: Vec<(&str, Option<&str>, RedirectKind)> = signals
            .redirects
            .iter()
            .map(|r| (r.host.as_str(), r.registrable_domain.as_deref(), r.kind))
            .collect();
        assert_eq!(
            facts,
            vec![
                (
                    "app.example.co.uk",
                    Some("example.co.uk"),
                    RedirectKind::Https
                ),
                ("127.0.0.1", None, RedirectKind::Loopback),
                ("localhost", None, RedirectKind::Loopback),
                ("", None, RedirectKind::PrivateScheme),
            ]
        );
        let client_uri = signals.client_uri.expect("client_uri facts");
        assert_eq!(
            client_uri.registrable_domain.as_deref(),
            Some("example.co.uk")
        );
    }

    #[test]
    fn warnings_carry_each_code_once() {
        let signals = signals_of(
            r#"{"redirect_uris":["com.example.app:/a","com.example.app:/b"],"application_type":"native"}"#,
        );
        assert_eq!(signals.warnings, vec!["private_use_scheme".to_owned()]);
    }
}
