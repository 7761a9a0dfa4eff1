//! Configuration: one typed struct with defaults, read from a TOML file, then
//! `CLIENTGATE_<SECTION>_<KEY>` environment variables, then command-line flags, each layer
//! overriding the one before. Every problem is reported at once, naming its key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::registration::Profile;

const MIB: u64 = 1024 * 1024;

/// All of clientgate's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub policy: PolicyConfig,
    pub store: StoreConfig,
    pub validation: ValidationConfig,
    pub step_up: StepUpConfig,
    pub cimd: CimdConfig,
    pub rates: RatesConfig,
    pub software_statements: SoftwareStatementsConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
}

/// `[retention]`: how long records are kept before the background pruner deletes them.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionConfig {
    /// `retention.decisions_days`: decisions and duplicate records.
    pub decisions: Duration,
    /// `retention.tickets_days`: resolved and expired step-up tickets.
    pub tickets: Duration,
    /// `retention.prune_every_secs`: how often the pruner runs.
    pub prune_every: Duration,
}

/// `[software_statements]`: which RFC 7591 software statements are trusted.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftwareStatementsConfig {
    /// `software_statements.trusted`: `{ "<iss>" = "<PEM or JWKS file, or inline JWKS>" }`.
    pub trusted: BTreeMap<String, String>,
    /// `software_statements.algorithms`: the JWS algorithms accepted.
    pub algorithms: Vec<String>,
    /// `software_statements.leeway_secs`: clock skew allowed on `exp`, `nbf`, `iat`.
    pub leeway: Duration,
}

/// `[rates]`: the sliding windows of the rate counters.
#[derive(Clone, Debug, PartialEq)]
pub struct RatesConfig {
    /// `rates.windows_secs`: each window is exposed to Cedar by its name (`60` → `1m`,
    /// `3600` → `1h`, `86400` → `24h`); the schema's `RateWindows` type must list them.
    pub windows: Vec<Duration>,
}

/// `[cimd]`: fetching and caching Client ID Metadata Documents.
#[derive(Clone, Debug, PartialEq)]
pub struct CimdConfig {
    /// `cimd.connect_timeout_ms`, `cimd.total_timeout_ms`.
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    /// `cimd.max_document_bytes`: decoded size cap.
    pub max_document_bytes: usize,
    /// `cimd.max_in_flight`, `cimd.max_in_flight_per_host`.
    pub max_in_flight: usize,
    pub max_in_flight_per_host: usize,
    /// `cimd.cache_min_secs`, `cimd.cache_max_secs`: bounds on HTTP freshness.
    pub cache_min: Duration,
    pub cache_max: Duration,
    /// `cimd.supported_grant_types`: what a CIMD client may keep.
    pub supported_grant_types: Vec<String>,
    /// `cimd.allow_loopback` (development only): fetch from 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// `cimd.ca_file` (development only): an extra PEM trust root.
    pub ca_file: Option<PathBuf>,
    /// `cimd.resolve` (development only): `{ "host" = "ip" | "ip:port" }`.
    pub resolve: BTreeMap<String, SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// `server.listen`: the gRPC address.
    pub listen: SocketAddr,
    /// `server.max_metadata_bytes`: the largest DCR `metadata_json` accepted.
    pub max_metadata_bytes: usize,
    /// `server.shutdown_grace_secs`: how long in-flight calls may run after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// `policy.dir`: schema, `*.cedar` files and `entities.json`.
    pub dir: PathBuf,
    /// `policy.obligations`: the `@obligation` values your authorization server honours.
    pub obligations: Vec<String>,
    /// `policy.watch`: reload when the policy directory changes.
    pub watch: bool,
    /// `policy.reload_debounce_ms`: how long the directory must be quiet before a reload.
    pub reload_debounce: Duration,
    /// `policy.shadow_dir`: a candidate policy directory evaluated beside the live one.
    pub shadow_dir: Option<PathBuf>,
}

impl Config {
    /// The challenges and obligations policies may name.
    pub fn vocabulary(&self) -> crate::policy::Vocabulary {
        let mut challenges = vec![crate::step_up::ADMIN_APPROVAL.to_owned()];
        challenges.extend(self.step_up.attested_challenges.iter().cloned());
        crate::policy::Vocabulary {
            challenges,
            obligations: self.policy.obligations.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// `store.dir`: the data directory.
    pub dir: PathBuf,
    /// `store.compact_above_mib`: the pruner compacts the store once it takes more than this
    /// on disk (and more than twice its size after the last compaction).
    pub compact_above_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValidationConfig {
    /// `validation.profile`: `mcp`, `strict` or `interop`.
    pub profile: Profile,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepUpConfig {
    /// `step_up.ticket_ttl_secs`: how long a step-up ticket stays pending.
    pub ticket_ttl: Duration,
    /// `step_up.attested_challenges`: challenge kinds the AS may report as completed.
    pub attested_challenges: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `log.level`: a tracing filter such as `info` or `clientgate=debug`.
    pub level: String,
    /// `log.format`: `text` or `json`.
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            server: ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
                max_metadata_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(10),
            },
            policy: PolicyConfig {
                dir: PathBuf::from("policies"),
                obligations: crate::policy::DEFAULT_OBLIGATIONS
                    .iter()
                    .map(|o| o.to_string())
                    .collect(),
                watch: true,
                reload_debounce: Duration::from_millis(300),
                shadow_dir: None,
            },
            store: StoreConfig {
                dir: PathBuf::from("data"),
                compact_above_bytes: 256 * MIB,
            },
            validation: ValidationConfig {
                profile: Profile::Mcp,
            },
            step_up: StepUpConfig {
                ticket_ttl: Duration::from_secs(24 * 3600),
                attested_challenges: vec!["user_consent".to_owned()],
            },
            cimd: CimdConfig {
                connect_timeout: Duration::from_secs(2),
                total_timeout: Duration::from_secs(5),
                max_document_bytes: 5 * 1024,
                max_in_flight: 64,
                max_in_flight_per_host: 4,
                cache_min: Duration::from_secs(300),
                cache_max: Duration::from_secs(86_400),
                supported_grant_types: vec![
                    "authorization_code".to_owned(),
                    "refresh_token".to_owned(),
                ],
                allow_loopback: false,
                ca_file: None,
                resolve: BTreeMap::new(),
            },
            rates: RatesConfig {
                windows: vec![
                    Duration::from_secs(60),
                    Duration::from_secs(3600),
                    Duration::from_secs(86_400),
                ],
            },
            software_statements: SoftwareStatementsConfig {
                trusted: BTreeMap::new(),
                algorithms: crate::registration::software_statement::DEFAULT_ALGORITHMS
                    .iter()
                    .map(|alg| alg.to_string())
                    .collect(),
                leeway: Duration::from_secs(60),
            },
            retention: RetentionConfig {
                decisions: Duration::from_secs(90 * 86_400),
                tickets: Duration::from_secs(30 * 86_400),
                prune_every: Duration::from_secs(3600),
            },
            log: LogConfig {
                level: "info".to_owned(),
                format: LogFormat::Text,
            },
        }
    }
}

/// Command-line flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub policies: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub shadow_policies: Option<PathBuf>,
}

/// One bad setting: where it came from, its key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.source, self.key, self.message)
    }
}

/// Every configuration problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

/// A raw setting before it is parsed: TOML keeps its type, the environment and flags are
/// text.
enum Raw {
    Toml(toml::Value),
    Text(String),
}

impl Raw {
    fn string(&self) -> Result<String, String> {
        match self {
            Raw::Toml(toml::Value::String(text)) | Raw::Text(text) => Ok(text.clone()),
            Raw::Toml(other) => Err(format!("expected a string, found {}", other.type_str())),
        }
    }

    fn integer(&self) -> Result<u64, String> {
        match self {
            Raw::Toml(toml::Value::Integer(number)) if *number >= 0 => Ok(*number as u64),
            Raw::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| format!("expected a non-negative integer, found `{text}`")),
            Raw::Toml(other) => Err(format!("expected a non-negative integer, found {other}")),
        }
    }

    /// An integer within `range`, or an error naming the range.
    fn integer_in(&self, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
        let value = self.integer()?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{value} is outside {}..={}",
                range.start(),
                range.end()
            ))
        }
    }

    fn integers(&self) -> Result<Vec<u64>, String> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item.as_integer() {
                    Some(number) if number >= 0 => Ok(number as u64),
                    _ => Err(format!("expected non-negative integers, found {item}")),
                })
                .collect(),
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.parse()
                        .map_err(|_| format!("expected non-negative integers, found `{item}`"))
                })
                .collect(),
            Raw::Toml(other) => Err(format!(
                "expected an array of integers, found {}",
                other.type_str()
            )),
        }
    }

    fn boolean(&self) -> Result<bool, String> {
        match self {
            Raw::Toml(toml::Value::Boolean(value)) => Ok(*value),
            Raw::Text(text) => match text.trim() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                other => Err(format!("expected true or false, found `{other}`")),
            },
            Raw::Toml(other) => Err(format!("expected true or false, found {other}")),
        }
    }

    /// A table of strings; from the environment, `key=value,key=value`.
    fn string_table(&self) -> Result<Vec<(String, String)>, String> {
        match self {
            Raw::Toml(toml::Value::Table(table)) => table
                .iter()
                .map(|(key, value)| {
                    value
                        .as_str()
                        .map(|value| (key.clone(), value.to_owned()))
                        .ok_or_else(|| format!("`{key}`: expected a string, found {value}"))
                })
                .collect(),
            Raw::Text(text) => text
                .split(',')
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                        .ok_or_else(|| format!("`{pair}` is not host=address"))
                })
                .collect(),
            Raw::Toml(other) => Err(format!("expected a table, found {}", other.type_str())),
        }
    }

    fn strings(&self) -> Result<Vec<String>, String> {
        match self {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("expected strings, found {item}"))
                })
                .collect(),
            Raw::Text(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            Raw::Toml(other) => Err(format!(
                "expected an array of strings, found {}",
                other.type_str()
            )),
        }
    }
}

impl Config {
    /// Loads the configuration: defaults, then `file`, then `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        let mut config = Config::default();
        let mut errors = Vec::new();
        if let Some(path) = file {
            let source = path.display().to_string();
            match std::fs::read_to_string(path) {
                Err(error) => errors.push(ConfigError {
                    source,
                    key: String::new(),
                    message: format!("cannot read: {error}"),
                }),
                Ok(text) => match text.parse::<toml::Table>() {
                    Err(error) => errors.push(ConfigError {
                        source,
                        key: String::new(),
                        message: format!("not valid TOML: {error}"),
                    }),
                    Ok(table) => {
                        for (key, value) in flatten(&table, &source, &mut errors) {
                            config.set(&source, &key, Raw::Toml(value), &mut errors);
                        }
                    }
                },
            }
        }
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("CLIENTGATE_"))
            .collect();
        for (name, value) in env {
            let Some(key) = env_key(&name) else {
                errors.push(ConfigError {
                    source: "environment".to_owned(),
                    key: name,
                    message: "not a clientgate setting".to_owned(),
                });
                continue;
            };
            config.set(
                &format!("environment ({name})"),
                &key,
                Raw::Text(value),
                &mut errors,
            );
        }
        let flags = [
            ("server.listen", overrides.listen.clone()),
            (
                "policy.dir",
                overrides.policies.as_ref().map(|p| p.display().to_string()),
            ),
            (
                "store.dir",
                overrides.data.as_ref().map(|p| p.display().to_string()),
            ),
            (
                "policy.shadow_dir",
                overrides
                    .shadow_policies
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                config.set("command line", key, Raw::Text(value), &mut errors);
            }
        }
        if config.cimd.cache_min > config.cimd.cache_max {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "cimd.cache_min_secs".to_owned(),
                message: "is above `cimd.cache_max_secs`".to_owned(),
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn set(&mut self, source: &str, key: &str, raw: Raw, errors: &mut Vec<ConfigError>) {
        let result = match key {
            "server.listen" => raw.string().and_then(|text| {
                text.parse()
                    .map(|addr| self.server.listen = addr)
                    .map_err(|_| format!("`{text}` is not an address such as 127.0.0.1:50051"))
            }),
            "server.max_metadata_bytes" => raw
                .integer_in(1024..=4_194_304)
                .map(|bytes| self.server.max_metadata_bytes = bytes as usize),
            "server.shutdown_grace_secs" => raw
                .integer_in(0..=600)
                .map(|secs| self.server.shutdown_grace = Duration::from_secs(secs)),
            "policy.dir" => raw.string().map(|dir| self.policy.dir = PathBuf::from(dir)),
            "policy.obligations" => raw
                .strings()
                .map(|obligations| self.policy.obligations = obligations),
            "policy.watch" => raw.boolean().map(|watch| self.policy.watch = watch),
            "policy.reload_debounce_ms" => raw
                .integer_in(10..=60_000)
                .map(|ms| self.policy.reload_debounce = Duration::from_millis(ms)),
            "policy.shadow_dir" => raw.string().map(|dir| {
                self.policy.shadow_dir = (!dir.is_empty()).then(|| PathBuf::from(dir));
            }),
            "store.dir" => raw.string().map(|dir| self.store.dir = PathBuf::from(dir)),
            "store.compact_above_mib" => raw
                .integer_in(1..=1_048_576)
                .map(|mib| self.store.compact_above_bytes = mib * MIB),
            "validation.profile" => raw.string().and_then(|text| {
                Profile::parse(&text)
                    .map(|profile| self.validation.profile = profile)
                    .ok_or_else(|| format!("`{text}` is not one of mcp, strict, interop"))
            }),
            "step_up.ticket_ttl_secs" => raw
                .integer_in(1..=2_592_000)
                .map(|secs| self.step_up.ticket_ttl = Duration::from_secs(secs)),
            "step_up.attested_challenges" => {
                raw.strings().and_then(|kinds| {
                    if kinds
                        .iter()
                        .any(|kind| kind == crate::step_up::ADMIN_APPROVAL)
                    {
                        Err("`admin_approval` is completed by an operator, never attested by the AS"
                        .to_owned())
                    } else {
                        self.step_up.attested_challenges = kinds;
                        Ok(())
                    }
                })
            }
            "cimd.connect_timeout_ms" => raw
                .integer_in(100..=60_000)
                .map(|ms| self.cimd.connect_timeout = Duration::from_millis(ms)),
            "cimd.total_timeout_ms" => raw
                .integer_in(100..=120_000)
                .map(|ms| self.cimd.total_timeout = Duration::from_millis(ms)),
            "cimd.max_document_bytes" => raw
                .integer_in(512..=1_048_576)
                .map(|bytes| self.cimd.max_document_bytes = bytes as usize),
            "cimd.max_in_flight" => raw
                .integer_in(1..=10_000)
                .map(|count| self.cimd.max_in_flight = count as usize),
            "cimd.max_in_flight_per_host" => raw
                .integer_in(1..=1000)
                .map(|count| self.cimd.max_in_flight_per_host = count as usize),
            "cimd.cache_min_secs" => raw
                .integer()
                .map(|secs| self.cimd.cache_min = Duration::from_secs(secs)),
            "cimd.cache_max_secs" => raw
                .integer()
                .map(|secs| self.cimd.cache_max = Duration::from_secs(secs)),
            "cimd.supported_grant_types" => raw
                .strings()
                .map(|grants| self.cimd.supported_grant_types = grants),
            "cimd.allow_loopback" => raw.boolean().map(|allow| self.cimd.allow_loopback = allow),
            "cimd.ca_file" => raw
                .string()
                .map(|path| self.cimd.ca_file = (!path.is_empty()).then(|| PathBuf::from(path))),
            "cimd.resolve" => raw.string_table().and_then(|pairs| {
                let mut resolve = BTreeMap::new();
                for (host, address) in pairs {
                    let addr = address
                        .parse::<SocketAddr>()
                        .or_else(|_| {
                            address
                                .parse::<std::net::IpAddr>()
                                .map(|ip| SocketAddr::new(ip, 0))
                        })
                        .map_err(|_| format!("`{host}` = `{address}` is not an ip or ip:port"))?;
                    resolve.insert(host.to_ascii_lowercase(), addr);
                }
                self.cimd.resolve = resolve;
                Ok(())
            }),
            "rates.windows_secs" => raw.integers().and_then(|windows| {
                if let Some(bad) = windows
                    .iter()
                    .find(|secs| !(60..=2_592_000).contains(*secs))
                {
                    return Err(format!("{bad} is not a window of 60..=2592000 seconds"));
                }
                self.rates.windows = windows.into_iter().map(Duration::from_secs).collect();
                Ok(())
            }),
            "software_statements.trusted" => raw.string_table().map(|pairs| {
                self.software_statements.trusted = pairs.into_iter().collect();
            }),
            "software_statements.algorithms" => {
                raw.strings().and_then(|algorithms| {
                    match algorithms
                        .iter()
                        .find(|alg| alg.eq_ignore_ascii_case("none") || alg.starts_with("HS"))
                    {
                        Some(bad) => Err(format!(
                            "`{bad}` is not allowed: only asymmetric algorithms verify a statement"
                        )),
                        None => {
                            self.software_statements.algorithms = algorithms;
                            Ok(())
                        }
                    }
                })
            }
            "software_statements.leeway_secs" => raw
                .integer_in(0..=600)
                .map(|secs| self.software_statements.leeway = Duration::from_secs(secs)),
            "retention.decisions_days" => raw
                .integer_in(1..=3650)
                .map(|days| self.retention.decisions = Duration::from_secs(days * 86_400)),
            "retention.tickets_days" => raw
                .integer_in(1..=3650)
                .map(|days| self.retention.tickets = Duration::from_secs(days * 86_400)),
            "retention.prune_every_secs" => raw
                .integer_in(10..=86_400)
                .map(|secs| self.retention.prune_every = Duration::from_secs(secs)),
            "log.level" => raw.string().map(|level| self.log.level = level),
            "log.format" => raw.string().and_then(|text| {
                self.log.format = match text.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(format!("`{text}` is not one of text, json")),
                };
                Ok(())
            }),
            _ => Err("not a clientgate setting".to_owned()),
        };
        if let Err(message) = result {
            errors.push(ConfigError {
                source: source.to_owned(),
                key: key.to_owned(),
                message,
            });
        }
    }
}

/// `[section] key = value` to `section.key`; anything not a table of values is an error.
fn flatten(
    table: &toml::Table,
    source: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, toml::Value)> {
    let mut flat = Vec::new();
    for (section, value) in table {
        match value {
            toml::Value::Table(keys) => {
                for (key, value) in keys {
                    flat.push((format!("{section}.{key}"), value.clone()));
                }
            }
            _ => errors.push(ConfigError {
                source: source.to_owned(),
                key: section.clone(),
                message: "expected a [section] table".to_owned(),
            }),
        }
    }
    flat
}

/// `CLIENTGATE_STEP_UP_TICKET_TTL_SECS` → `step_up.ticket_ttl_secs`: the section is the
/// longest known section name that prefixes the rest.
fn env_key(name: &str) -> Option<String> {
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
        "log",
    ];
    let rest = name.strip_prefix("CLIENTGATE_")?.to_ascii_lowercase();
    SECTIONS.iter().find_map(|section| {
        let key = rest.strip_prefix(section)?.strip_prefix('_')?;
        (!key.is_empty()).then(|| format!("{section}.{key}"))
    })
}

#[cfg(test)]
mod tests;
