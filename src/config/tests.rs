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
    let config = Config::load(None, env(&[]), &Overrides::default()).expect("defaults load");
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
    .expect("valid layers");
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
    .expect("valid");
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
    .expect("valid threshold");
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
