//! The shared vocabulary every layer speaks: what a decision is, why it was made, how a
//! client registers, who called, and the clock's unit. It sits below everything else and
//! imports nothing from the crate, so that validation, policies, the CIMD fetcher, step-up
//! and the store can all use these words without reaching up into the engine.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What clientgate answers about one registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
    StepUp,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
            Decision::StepUp => "step_up",
        }
    }
}

/// Why: a policy id and its `@reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub policy_id: String,
    pub message: String,
}

/// How the client is registering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationType {
    Dcr,
    Cimd,
}

impl RegistrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationType::Dcr => "dcr",
            RegistrationType::Cimd => "cimd",
        }
    }
}

/// Who called the authorization server, as the AS reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    pub user_agent: String,
    pub user_authenticated: bool,
}

/// Milliseconds since the Unix epoch: how every stored time is kept. Times before the
/// epoch read as 0.
pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_and_from_millis_round_trip() {
        assert_eq!(millis(from_millis(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn stored_names_of_the_vocabulary_do_not_change() {
        // These strings are in every decision record on disk (format version 1).
        assert_eq!(
            serde_json::to_string(&Decision::StepUp).unwrap(),
            "\"step_up\""
        );
        assert_eq!(
            serde_json::to_string(&RegistrationType::Cimd).unwrap(),
            "\"cimd\""
        );
    }
}

/// An age as people write one: `90s`, `30m`, `1h`, `7d`.
pub fn parse_age(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at_checked(split)?;
    let number: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod age_tests {
    use super::*;

    #[test]
    fn ages_read_as_people_write_them() {
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("h"), None);
        assert_eq!(parse_age("1w"), None);
        assert_eq!(parse_age(""), None);
    }
}
