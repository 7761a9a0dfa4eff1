//! The environment layer: `CLIENTGATE_<SECTION>_<KEY>` variables, and `RUST_LOG` as
//! `log.level` when `CLIENTGATE_LOG_LEVEL` is not set. A `CLIENTGATE_*` variable that names
//! no setting is a warning, not an error: other programs share the prefix (the example
//! authorization server's `CLIENTGATE_ADDR`), and refusing to start beside them helps
//! nobody.

/// The sections of the configuration, longest first where one prefixes another.
const SECTIONS: &[&str] = &[
    "software_statements",
    "retention",
    "rates",
    "server",
    "policy",
    "store",
    "validation",
    "step_up",
    "cimd",
    "auth",
    "tls",
    "log",
    "notify",
    "console",
];

/// One variable that may set a key: `(source, variable, key or None, value)`.
pub(super) struct EnvSetting {
    /// How errors name where the value came from: `environment (CLIENTGATE_…)`.
    pub source: String,
    pub variable: String,
    /// The key it sets; `None` when the name maps to no section.
    pub key: Option<String>,
    pub value: String,
}

/// The variables of `env` that are clientgate's, sorted by name.
pub(super) fn settings_in(env: impl IntoIterator<Item = (String, String)>) -> Vec<EnvSetting> {
    let env: std::collections::BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with("CLIENTGATE_") || name == "RUST_LOG")
        .collect();
    let has_level = env.contains_key("CLIENTGATE_LOG_LEVEL");
    env.into_iter()
        .filter(|(name, _)| name != "RUST_LOG" || !has_level)
        .map(|(variable, value)| EnvSetting {
            source: format!("environment ({variable})"),
            key: if variable == "RUST_LOG" {
                Some("log.level".to_owned())
            } else {
                env_key(&variable)
            },
            variable,
            value,
        })
        .collect()
}

/// `CLIENTGATE_STEP_UP_TICKET_TTL_SECS` → `step_up.ticket_ttl_secs`: the section is the
/// longest known section name that prefixes the rest.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("CLIENTGATE_")?.to_ascii_lowercase();
    SECTIONS.iter().find_map(|section| {
        let key = rest.strip_prefix(section)?.strip_prefix('_')?;
        (!key.is_empty()).then(|| format!("{section}.{key}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_map_to_keys_by_the_longest_section() {
        assert_eq!(
            env_key("CLIENTGATE_STEP_UP_TICKET_TTL_SECS").as_deref(),
            Some("step_up.ticket_ttl_secs")
        );
        assert_eq!(
            env_key("CLIENTGATE_SOFTWARE_STATEMENTS_LEEWAY_SECS").as_deref(),
            Some("software_statements.leeway_secs")
        );
        assert_eq!(env_key("CLIENTGATE_ADDR"), None);
        assert_eq!(env_key("CLIENTGATE_LOG_"), None);
    }

    #[test]
    fn rust_log_is_the_log_level_unless_clientgate_log_level_is_set() {
        let found = settings_in([("RUST_LOG".to_owned(), "debug".to_owned())]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key.as_deref(), Some("log.level"));
        let both = settings_in([
            ("RUST_LOG".to_owned(), "debug".to_owned()),
            ("CLIENTGATE_LOG_LEVEL".to_owned(), "warn".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ]);
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].variable, "CLIENTGATE_LOG_LEVEL");
    }
}
