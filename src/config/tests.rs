//! Configuration layering and error reporting.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_need_no_file() {
    let config = Config::load(None, env(&[]), &Overrides::default())
        .expect("defaults load")
        .config;
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(config.policy.dir, PathBuf::from("policies"));
    assert_eq!(config.store.dir, PathBuf::from("data"));
    assert_eq!(config.validation.profile, Profile::Mcp);
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clientgate.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:1\"\n[validation]\nprofile = \"strict\"\n[store]\ndir = \"/from/file\"\n",
    )
    .unwrap();
    let config = Config::load(
        Some(&file),
        env(&[
            ("CLIENTGATE_SERVER_LISTEN", "127.0.0.1:2"),
            ("CLIENTGATE_STEP_UP_TICKET_TTL_SECS", "600"),
            ("PATH", "/bin"),
        ]),
        &Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        },
    )
    .expect("valid layers")
    .config;
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:3");
    assert_eq!(config.validation.profile, Profile::Strict);
    assert_eq!(config.store.dir, PathBuf::from("/from/file"));
    assert_eq!(config.step_up.ticket_ttl, Duration::from_secs(600));
}

#[test]
fn cimd_test_switches_are_read_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clientgate.toml");
    std::fs::write(
        &file,
        "[cimd]\nallow_loopback = true\nresolve = { \"app.example.com\" = \"127.0.0.1:8443\", \"b.example\" = \"::1\" }\n",
    )
    .unwrap();
    let config = Config::load(
        Some(&file),
        env(&[("CLIENTGATE_CIMD_CA_FILE", "/tmp/ca.pem")]),
        &Overrides::default(),
    )
    .expect("valid")
    .config;
    assert!(config.cimd.allow_loopback);
    assert_eq!(config.cimd.ca_file, Some(PathBuf::from("/tmp/ca.pem")));
    assert_eq!(
        config.cimd.resolve["app.example.com"].to_string(),
        "127.0.0.1:8443"
    );
    assert_eq!(config.cimd.resolve["b.example"].to_string(), "[::1]:0");
    assert!(!Config::default().cimd.allow_loopback, "off by default");
}

#[test]
fn every_error_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clientgate.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = 5\nlisen = \"x\"\n[validation]\nprofile = \"lenient\"\n",
    )
    .unwrap();
    let errors = Config::load(
        Some(&file),
        env(&[(
            "CLIENTGATE_STEP_UP_ATTESTED_CHALLENGES",
            "user_consent,admin_approval",
        )]),
        &Overrides::default(),
    )
    .expect_err("four bad settings");
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "server.lisen",
            "server.listen",
            "validation.profile",
            "step_up.attested_challenges"
        ]
    );
    assert!(
        errors
            .to_string()
            .contains("`lenient` is not one of mcp, strict, interop")
    );
}

#[test]
fn the_compaction_threshold_is_read_in_mib_and_range_checked() {
    let config = Config::load(
        None,
        env(&[("CLIENTGATE_STORE_COMPACT_ABOVE_MIB", "32")]),
        &Overrides::default(),
    )
    .expect("valid threshold")
    .config;
    assert_eq!(config.store.compact_above_bytes, 32 * 1024 * 1024);
    let errors = Config::load(
        None,
        env(&[("CLIENTGATE_STORE_COMPACT_ABOVE_MIB", "0")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(errors.contains("store.compact_above_mib"), "{errors}");
    assert!(errors.contains("outside 1..=1048576"), "{errors}");
}

#[test]
fn an_unknown_clientgate_variable_is_a_warning_not_an_error() {
    let loaded = Config::load(
        None,
        env(&[
            ("CLIENTGATE_ADDR", "127.0.0.1:50051"),
            ("CLIENTGATE_LOG_LEVLE", "debug"),
            ("CLIENTGATE_STORE_DIR", "/var/lib/clientgate"),
        ]),
        &Overrides::default(),
    )
    .expect("a neighbour's variable does not stop clientgate");
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(warned, ["CLIENTGATE_ADDR", "CLIENTGATE_LOG_LEVLE"]);
    assert!(loaded.warnings[0].to_string().contains("ignored"));
    assert_eq!(
        loaded.config.store.dir,
        PathBuf::from("/var/lib/clientgate")
    );
}

#[test]
fn a_bad_value_of_a_known_variable_is_still_an_error() {
    let errors = Config::load(
        None,
        env(&[("CLIENTGATE_SERVER_LISTEN", "nowhere")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(errors.0[0].key, "server.listen");
}

#[test]
fn a_log_level_that_names_no_level_is_refused() {
    for bad in ["infoo", "clientgate", "info,tonic=loud", ""] {
        let errors = Config::load(
            None,
            env(&[("CLIENTGATE_LOG_LEVEL", bad)]),
            &Overrides::default(),
        )
        .expect_err(bad);
        assert_eq!(errors.0[0].key, "log.level", "{bad}");
    }
    for good in [
        "info",
        "WARN",
        "warn,clientgate=debug",
        "clientgate::engine=trace",
    ] {
        let config = Config::load(
            None,
            env(&[("CLIENTGATE_LOG_LEVEL", good)]),
            &Overrides::default(),
        )
        .expect(good)
        .config;
        assert_eq!(config.log.level, good);
    }
}

#[test]
fn rust_log_sets_the_log_level_and_clientgate_log_level_wins() {
    let from_rust_log = Config::load(None, env(&[("RUST_LOG", "debug")]), &Overrides::default())
        .unwrap()
        .config;
    assert_eq!(from_rust_log.log.level, "debug");
    let both = Config::load(
        None,
        env(&[("RUST_LOG", "debug"), ("CLIENTGATE_LOG_LEVEL", "warn")]),
        &Overrides::default(),
    )
    .unwrap()
    .config;
    assert_eq!(both.log.level, "warn");
    let typo =
        Config::load(None, env(&[("RUST_LOG", "infoo")]), &Overrides::default()).unwrap_err();
    assert_eq!(typo.0[0].source, "environment (RUST_LOG)");
}

#[test]
fn the_default_configuration_and_the_modules_agree_on_every_default() {
    let config = Config::default();
    assert_eq!(config.vocabulary(), crate::policy::Vocabulary::default());
    assert_eq!(
        config.store.compact_above_bytes,
        crate::store::SledLimits::default().above_bytes
    );
    let bounds = crate::cimd::cache::CacheBounds::default();
    assert_eq!(
        (config.cimd.cache_min, config.cimd.cache_max),
        (bounds.min, bounds.max)
    );
}

#[test]
fn the_postgres_backend_needs_its_url_and_reads_its_settings() {
    let errors = Config::load(
        None,
        env(&[("CLIENTGATE_STORE_BACKEND", "postgres")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(errors.contains("store.postgres_url"), "{errors}");
    assert!(errors.contains("CLIENTGATE_STORE_POSTGRES_URL"), "{errors}");

    let config = Config::load(
        None,
        env(&[
            ("CLIENTGATE_STORE_BACKEND", "postgres"),
            (
                "CLIENTGATE_STORE_POSTGRES_URL",
                "postgres://gate@db.internal/clientgate",
            ),
            ("CLIENTGATE_STORE_POSTGRES_POOL_SIZE", "4"),
            ("CLIENTGATE_STORE_POSTGRES_STATEMENT_TIMEOUT_MS", "2500"),
            (
                "CLIENTGATE_STORE_POSTGRES_CA_FILE",
                "/etc/clientgate/db-ca.pem",
            ),
        ]),
        &Overrides::default(),
    )
    .expect("a complete postgres configuration")
    .config;
    assert_eq!(config.store.backend, StoreBackend::Postgres);
    let postgres = &config.store.postgres;
    assert_eq!(postgres.url, "postgres://gate@db.internal/clientgate");
    assert_eq!(postgres.pool_size, 4);
    assert_eq!(postgres.statement_timeout, Duration::from_millis(2500));
    assert_eq!(
        postgres.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/clientgate/db-ca.pem"))
    );

    let errors = Config::load(
        None,
        env(&[("CLIENTGATE_STORE_BACKEND", "mysql")]),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("`mysql` is not one of sled, postgres"),
        "{errors}"
    );
    let default = Config::load(None, env(&[]), &Overrides::default()).unwrap();
    assert_eq!(
        default.config.store.backend,
        StoreBackend::Sled,
        "sled stays the default"
    );
}
