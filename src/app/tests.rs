//! The engine as assembled from a configuration, with a real store: what a decision leaves
//! behind, and software statements verified with configured issuers.
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::engine::test_input as input;
use crate::policy::load_policy_dir;
use crate::step_up::{ADMIN_APPROVAL, TicketState};
use crate::store::SledStore;
use crate::vocab::Decision;

#[tokio::test]
async fn a_step_up_records_a_pending_ticket_with_its_challenges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let policies =
        load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let mut config = Config::default();
    config.step_up.ticket_ttl = Duration::from_secs(600);
    let settings = engine_settings(&config).unwrap();
    let engine = build_engine(&config, settings, policies, store.clone()).unwrap();
    let evaluated = engine
        .evaluate(input(
            r#"{"client_uri":"https://app.example.com","redirect_uris":["https://cb.example.net/cb"]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(evaluated.decision, Decision::StepUp);
    let step_up = evaluated.step_up.expect("a step-up names its ticket");
    let ticket = store
        .get_ticket(&step_up.ticket_id)
        .unwrap()
        .expect("the ticket is stored");
    assert_eq!(ticket.state, TicketState::Pending);
    assert_eq!(ticket.challenges, vec![ADMIN_APPROVAL]);
    assert_eq!(ticket.tenant, "acme");
    assert_eq!(ticket.fingerprint, evaluated.fingerprint);
    assert_eq!(Some(ticket.decision_id.clone()), evaluated.decision_id);
    assert_eq!(ticket.expires_at_ms - ticket.created_at_ms, 600_000);

    let record = store
        .get_decision(&ticket.decision_id)
        .unwrap()
        .expect("recorded");
    assert_eq!(record.step_up.map(|s| s.ticket_id), Some(step_up.ticket_id));
    assert_eq!(record.ip.as_deref(), Some("203.0.113.7"));
}

mod software_statements {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::engine::{Evaluated, decide_dcr};
    use crate::registration::Code;
    use crate::registration::software_statement::{ClaimRules, TrustedIssuers};

    const ISSUER: &str = "https://issuer.example";

    struct Keys {
        signing: EncodingKey,
        public_pem: String,
    }

    fn keys() -> Keys {
        let pair = rcgen::KeyPair::generate().unwrap();
        Keys {
            signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
        }
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(keys: &Keys, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &keys.signing).unwrap()
    }

    fn settings_trusting(keys: &Keys, algorithms: &[&str]) -> EngineSettings {
        let mut settings = engine_settings(&Config::default()).unwrap();
        let issuers = vec![(ISSUER.to_owned(), keys.public_pem.clone())];
        let algorithms: Vec<String> = algorithms.iter().map(|a| a.to_string()).collect();
        settings.trusted_issuers = TrustedIssuers::build(&issuers, &algorithms, 60, |_| {
            Err(std::io::Error::other("no files in this test"))
        })
        .unwrap();
        settings
    }

    /// Decides a DCR body carrying `statement` beside plain redirect URI B.
    fn decide_with(settings: &EngineSettings, statement: &str) -> Evaluated {
        let policies =
            load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        let body = json!({
            "client_name": "Plain",
            "client_uri": "https://vendor.example",
            "redirect_uris": ["https://b.example.net/cb"],
            "software_statement": statement,
        })
        .to_string();
        let input = input(&body);
        decide_dcr(
            &policies,
            settings,
            &input,
            &body,
            false,
            None,
            SystemTime::now(),
        )
    }

    fn error_code(evaluated: &Evaluated) -> &'static str {
        evaluated
            .error
            .as_ref()
            .map_or("", |(code, _)| code.as_str())
    }

    #[test]
    fn e14_a_trusted_statement_overrides_the_plain_members_and_approves() {
        let keys = keys();
        let statement = sign(
            &keys,
            json!({"iss": ISSUER, "software_id": "acme-cli", "redirect_uris": ["https://a.example.com/cb"], "iat": now_secs(), "exp": now_secs() + 3600}),
        );
        let evaluated = decide_with(&settings_trusting(&keys, &["ES256"]), &statement);
        assert_eq!(
            evaluated.decision,
            Decision::Approve,
            "{:?}",
            evaluated.findings
        );
        assert!(
            evaluated
                .reasons
                .iter()
                .any(|r| r.policy_id == "approve_trusted_software")
        );
        let registered: serde_json::Value =
            serde_json::from_str(&evaluated.client_metadata_json).unwrap();
        assert_eq!(
            registered["redirect_uris"],
            json!(["https://a.example.com/cb"]),
            "the statement wins"
        );
        assert_eq!(registered["software_id"], "acme-cli");
        assert_eq!(
            registered["software_statement"], statement,
            "echoed unchanged"
        );
    }

    #[test]
    fn e12_a_statement_from_an_untrusted_issuer_is_unapproved() {
        let keys = keys();
        let statement = sign(
            &keys,
            json!({"iss": "https://stranger.example", "iat": now_secs(), "exp": now_secs() + 3600}),
        );
        let evaluated = decide_with(&settings_trusting(&keys, &["ES256"]), &statement);
        assert_eq!(evaluated.decision, Decision::Deny);
        assert_eq!(error_code(&evaluated), "unapproved_software_statement");
    }

    #[test]
    fn a_statement_signed_with_another_key_is_invalid() {
        let trusted = keys();
        let impostor = keys();
        let statement = sign(
            &impostor,
            json!({"iss": ISSUER, "iat": now_secs(), "exp": now_secs() + 3600}),
        );
        let evaluated = decide_with(&settings_trusting(&trusted, &["ES256"]), &statement);
        assert_eq!(error_code(&evaluated), "invalid_software_statement");
        assert!(
            evaluated
                .findings
                .iter()
                .any(|f| f.code == Code::SoftwareStatementInvalid)
        );
    }

    #[test]
    fn an_expired_or_future_statement_is_invalid() {
        let keys = keys();
        let settings = settings_trusting(&keys, &["ES256"]);
        let expired = sign(&keys, json!({"iss": ISSUER, "exp": now_secs() - 3600}));
        assert_eq!(
            error_code(&decide_with(&settings, &expired)),
            "invalid_software_statement"
        );
        let future = sign(&keys, json!({"iss": ISSUER, "iat": now_secs() + 3600}));
        assert_eq!(
            error_code(&decide_with(&settings, &future)),
            "invalid_software_statement"
        );
        let early = sign(&keys, json!({"iss": ISSUER, "nbf": now_secs() + 3600}));
        assert_eq!(
            error_code(&decide_with(&settings, &early)),
            "invalid_software_statement"
        );
    }

    /// A statement that verifies under `claims`, or why not.
    fn verdict(claims: ClaimRules, body: serde_json::Value) -> Result<(), String> {
        use crate::registration::software_statement::{StatementCheck, verify};
        let keys = keys();
        let trusted = settings_trusting(&keys, &["ES256"])
            .trusted_issuers
            .with_claims(claims);
        match verify(&sign(&keys, body), &trusted, now_secs()) {
            StatementCheck::Verified { .. } => Ok(()),
            StatementCheck::Invalid(why) | StatementCheck::Untrusted(why) => Err(why),
        }
    }

    /// F-15: `exp` required unless configured otherwise; `aud`, when present, names us.
    #[test]
    fn a_statement_must_expire_and_any_audience_must_be_this_server() {
        let later = now_secs() + 3600;
        let strict = ClaimRules::default();
        let err = verdict(strict.clone(), json!({"iss": ISSUER})).unwrap_err();
        assert!(err.contains("exp"), "{err}");
        assert_eq!(
            verdict(
                ClaimRules {
                    require_exp: false,
                    audience: None
                },
                json!({"iss": ISSUER})
            ),
            Ok(())
        );
        let ours = ClaimRules {
            require_exp: true,
            audience: Some("https://as.example".to_owned()),
        };
        assert_eq!(
            verdict(
                ours.clone(),
                json!({"iss": ISSUER, "exp": later, "aud": "https://as.example"})
            ),
            Ok(())
        );
        assert_eq!(
            verdict(
                ours.clone(),
                json!({"iss": ISSUER, "exp": later, "aud": ["https://x.example", "https://as.example"]})
            ),
            Ok(())
        );
        assert_eq!(
            verdict(ours.clone(), json!({"iss": ISSUER, "exp": later})),
            Ok(()),
            "no aud: fine"
        );
        let other = verdict(
            ours,
            json!({"iss": ISSUER, "exp": later, "aud": "https://other-as.example"}),
        )
        .unwrap_err();
        assert!(other.contains("another audience"), "{other}");
        let unconfigured = verdict(
            strict,
            json!({"iss": ISSUER, "exp": later, "aud": "https://as.example"}),
        )
        .unwrap_err();
        assert!(
            unconfigured.contains("software_statements.audience is not set"),
            "{unconfigured}"
        );
    }

    #[test]
    fn an_algorithm_outside_the_allow_list_is_invalid() {
        let keys = keys();
        let statement = sign(&keys, json!({"iss": ISSUER}));
        let evaluated = decide_with(&settings_trusting(&keys, &["RS256"]), &statement);
        assert_eq!(error_code(&evaluated), "invalid_software_statement");
    }

    #[test]
    fn e13_an_unsigned_statement_is_invalid_even_from_a_trusted_issuer() {
        let keys = keys();
        // {"alg":"none"} . {"iss":"https://issuer.example"} .
        let unsigned = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIn0.";
        let evaluated = decide_with(&settings_trusting(&keys, &["ES256"]), unsigned);
        assert_eq!(error_code(&evaluated), "invalid_software_statement");
    }
}

mod exposure {
    use super::*;
    use crate::auth::Credentials;
    use crate::config::ListenAddr;

    fn config(listen: &str, admin: Option<&str>, allow_insecure: bool) -> Config {
        let mut config = Config::default();
        config.server.listen = ListenAddr::parse(listen).unwrap();
        config.server.admin_listen = admin.map(|admin| ListenAddr::parse(admin).unwrap());
        config.server.allow_insecure = allow_insecure;
        config
    }

    #[test]
    fn only_loopback_and_unix_sockets_are_served_unprotected() {
        let open = Credentials::Open;
        for local in [
            "127.0.0.1:50051",
            "[::1]:50051",
            "unix:/run/clientgate.sock",
        ] {
            assert!(
                matches!(exposure(&config(local, None, false), &open), Ok(None)),
                "{local}"
            );
        }
        for exposed in ["0.0.0.0:50051", "192.0.2.10:50051", "[::]:50051"] {
            let refused = exposure(&config(exposed, None, false), &open).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .contains("without TLS and without authentication"),
                "{exposed}: {refused}"
            );
        }
        let admin_exposed = exposure(&config("127.0.0.1:1", Some("0.0.0.0:2"), false), &open);
        assert!(admin_exposed.is_err(), "the admin listener counts too");
    }

    #[test]
    fn allow_insecure_serves_beyond_loopback_and_says_so() {
        let warning = exposure(&config("0.0.0.0:50051", None, true), &Credentials::Open)
            .unwrap()
            .expect("a warning at every start");
        assert!(warning.contains("`server.allow_insecure`"), "{warning}");
        let with_tokens = exposure(
            &config("0.0.0.0:50051", None, false),
            &Credentials::Known {
                tokens: Vec::new(),
                clients: Vec::new(),
            },
        )
        .unwrap_err();
        assert!(
            with_tokens
                .to_string()
                .contains("beyond loopback without TLS:"),
            "tokens travel in the clear without TLS: {with_tokens}"
        );
    }

    #[test]
    fn tls_and_tokens_serve_beyond_loopback() {
        let mut tls = config("0.0.0.0:50051", None, false);
        tls.tls.cert_file = Some("cert.pem".into());
        tls.tls.key_file = Some("key.pem".into());
        assert!(matches!(
            exposure(
                &tls,
                &Credentials::Known {
                    tokens: Vec::new(),
                    clients: Vec::new(),
                }
            ),
            Ok(None)
        ));
        let anyone = exposure(&tls, &Credentials::Open).unwrap_err();
        assert!(
            anyone
                .to_string()
                .contains("beyond loopback without authentication:"),
            "{anyone}"
        );
    }
}
