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
