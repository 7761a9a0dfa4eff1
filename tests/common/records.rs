//! A realistic decision record (about 800 bytes stored), the n-th of a load: for the
//! retention test and the store footprint example.

use clientgate::registration::{Code, Finding, Severity};
use clientgate::store::{DecisionRecord, RateDimension, RateKey};
use clientgate::vocab::RegistrationType;
use clientgate::vocab::{Decision, Reason};

/// Simulated time between two decisions.
pub const SPACING_MS: u64 = 1_000;

/// The n-th decision, one simulated second after the one before, with its rate keys.
pub fn decision(n: u64) -> (DecisionRecord, Vec<RateKey>) {
    let ms = 1_700_000_000_000 + n * SPACING_MS;
    let ip = format!("198.51.100.{}", n % 200);
    let record = DecisionRecord {
        decision_id: ulid::Ulid::from_parts(ms, u128::from(n)).to_string(),
        decided_at_ms: ms,
        tenant: "default".to_owned(),
        registration_type: RegistrationType::Dcr,
        client_id: None,
        client_name: Some(format!("Client {n}")),
        software_id: None,
        fingerprint: format!("{:032x}", n % 5_000),
        ip: Some(ip.clone()),
        user_agent: "load-test".to_owned(),
        decision: if n.is_multiple_of(3) {
            Decision::Approve
        } else {
            Decision::Deny
        },
        reasons: vec![Reason {
            policy_id: "approve_https_or_loopback_redirects".to_owned(),
            message: "every redirect URI is https or loopback".to_owned(),
        }],
        findings: vec![Finding {
            code: Code::UriHostMismatch,
            severity: Severity::Warning,
            field: "logo_uri".to_owned(),
            message: "`logo_uri` is on `cdn.example.net`, which none of the redirect URIs use"
                .to_owned(),
        }],
        error: None,
        error_description: None,
        obligations: Vec::new(),
        step_up: None,
        policy_version: "0123456789abcdef".to_owned(),
        latency_micros: 250,
        client_metadata_json: format!(
            r#"{{"redirect_uris":["https://app{n}.example.com/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code"],"response_types":["code"],"client_name":"Client {n}"}}"#
        ),
        redeemed_ticket: None,
    };
    let keys = vec![
        RateKey {
            dimension: RateDimension::Ip,
            value: ip,
        },
        RateKey {
            dimension: RateDimension::Tenant,
            value: "default".to_owned(),
        },
        RateKey {
            dimension: RateDimension::Fingerprint,
            value: record.fingerprint.clone(),
        },
    ];
    (record, keys)
}
