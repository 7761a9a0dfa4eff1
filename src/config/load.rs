//! Loading the layers in order — defaults, the TOML file, the environment, the command
//! line — and checking each setting as it is set. Every problem is collected with its
//! source and key, so that one run reports them all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{Raw, ValueError, flatten};
use super::tables::{clients, tokens, webhooks};
use super::{Config, DecisionExport, ListenAddr, LogFormat, MIB, StoreBackend, env};
use crate::registration::Profile;

/// Command-line flags that override the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
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

impl Config {
    /// Loads the configuration: defaults, then `file`, then `env`, then `overrides`.
    /// Every error is reported at once; variables with the `CLIENTGATE_` prefix that name
    /// no setting come back as warnings.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<LoadedConfig, ConfigErrors> {
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
                            if config
                                .set(&source, &key, Raw::Toml(value), &mut errors)
                                .is_err()
                            {
                                errors.push(unknown(&source, &key));
                            }
                        }
                    }
                },
            }
        }
        let mut warnings = Vec::new();
        for setting in env::settings_in(env) {
            let known = setting.key.as_deref().is_some_and(|key| {
                config
                    .set(&setting.source, key, Raw::Text(setting.value), &mut errors)
                    .is_ok()
            });
            if !known {
                warnings.push(ConfigError {
                    source: "environment".to_owned(),
                    key: setting.variable,
                    message: "not a clientgate setting; ignored".to_owned(),
                });
            }
        }
        let flags = [
            ("server.listen", overrides.listen.clone()),
            ("server.admin_listen", overrides.admin_listen.clone()),
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
            if let Some(value) = value
                && config
                    .set("command line", key, Raw::Text(value), &mut errors)
                    .is_err()
            {
                errors.push(unknown("command line", key));
            }
        }
        let tls = &config.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "tls.cert_file".to_owned(),
                message: "`tls.cert_file` and `tls.key_file` go together".to_owned(),
            });
        }
        if !config.auth.clients.is_empty() && tls.client_ca_file.is_none() {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "auth.clients".to_owned(),
                message: "client certificates are only asked for with `tls.client_ca_file`"
                    .to_owned(),
            });
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "tls.client_ca_file".to_owned(),
                message: "client certificates need TLS: set `tls.cert_file` and `tls.key_file`"
                    .to_owned(),
            });
        }
        if config.store.backend == StoreBackend::Postgres && config.store.postgres.url.is_empty() {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "store.postgres_url".to_owned(),
                message: "`store.backend = \"postgres\"` needs the database: set \
                          `store.postgres_url` or CLIENTGATE_STORE_POSTGRES_URL"
                    .to_owned(),
            });
        }
        if config.cimd.cache_min > config.cimd.cache_max {
            errors.push(ConfigError {
                source: "configuration".to_owned(),
                key: "cimd.cache_min_secs".to_owned(),
                message: "is above `cimd.cache_max_secs`".to_owned(),
            });
        }
        if errors.is_empty() {
            Ok(LoadedConfig { config, warnings })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Sets `key` from `raw`; a bad value is pushed on `errors`. `Err(Unknown)` when `key`
    /// is no setting at all, which the caller reports as fits the layer.
    fn set(
        &mut self,
        source: &str,
        key: &str,
        raw: Raw,
        errors: &mut Vec<ConfigError>,
    ) -> Result<(), Unknown> {
        let result = match key {
            "server.listen" => raw.string().and_then(|text| {
                ListenAddr::parse(&text)
                    .map(|addr| self.server.listen = addr)
                    .ok_or_else(|| {
                        invalid(format!(
                            "`{text}` is not an address such as 127.0.0.1:50051 or unix:/run/clientgate.sock"
                        ))
                    })
            }),
            "server.socket_mode" => raw.string().and_then(|text| {
                u32::from_str_radix(text.trim(), 8)
                    .ok()
                    .filter(|mode| *mode <= 0o777)
                    .map(|mode| self.server.socket_mode = Some(mode))
                    .ok_or_else(|| invalid(format!("`{text}` is not an octal mode such as \"0660\"")))
            }),
            "server.admin_listen" => raw.string().and_then(|text| {
                if text.trim().is_empty() {
                    self.server.admin_listen = None;
                    return Ok(());
                }
                ListenAddr::parse(&text)
                    .map(|addr| self.server.admin_listen = Some(addr))
                    .ok_or_else(|| {
                        invalid(format!(
                            "`{text}` is not an address such as 127.0.0.1:50052 or unix:/run/clientgate-admin.sock"
                        ))
                    })
            }),
            "server.max_connections" => raw
                .integer_in(1..=1_000_000)
                .map(|count| self.server.max_connections = count as usize),
            "server.first_byte_timeout_ms" => raw
                .integer_in(100..=60_000)
                .map(|ms| self.server.first_byte_timeout = Duration::from_millis(ms)),
            "server.max_concurrent_streams" => raw
                .integer_in(1..=10_000)
                .map(|count| self.server.max_concurrent_streams = count as usize),
            "server.call_timeout_secs" => raw
                .integer_in(1..=3600)
                .map(|secs| self.server.call_timeout = Duration::from_secs(secs)),
            "server.keepalive_secs" => raw
                .integer_in(1..=3600)
                .map(|secs| self.server.keepalive = Duration::from_secs(secs)),
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
            "store.max_size_mib" => raw
                .integer_in(0..=16_777_216)
                .map(|mib| self.store.max_size_bytes = mib * MIB),
            "store.backend" => raw.string().and_then(|text| {
                self.store.backend = match text.as_str() {
                    "sled" => StoreBackend::Sled,
                    "postgres" => StoreBackend::Postgres,
                    _ => return Err(invalid(format!("`{text}` is not one of sled, postgres"))),
                };
                Ok(())
            }),
            "store.postgres_url" => raw.string().map(|url| self.store.postgres.url = url),
            "store.postgres_pool_size" => raw
                .integer_in(1..=1024)
                .map(|size| self.store.postgres.pool_size = size as usize),
            "store.postgres_statement_timeout_ms" => raw
                .integer_in(100..=600_000)
                .map(|ms| self.store.postgres.statement_timeout = Duration::from_millis(ms)),
            "store.postgres_ca_file" => raw.string().map(|path| {
                self.store.postgres.ca_file = (!path.is_empty()).then(|| PathBuf::from(path));
            }),
            "validation.profile" => raw.string().and_then(|text| {
                Profile::parse(&text)
                    .map(|profile| self.validation.profile = profile)
                    .ok_or_else(|| invalid(format!("`{text}` is not one of mcp, strict, interop")))
            }),
            "step_up.ticket_ttl_secs" => raw
                .integer_in(1..=2_592_000)
                .map(|secs| self.step_up.ticket_ttl = Duration::from_secs(secs)),
            "step_up.ticket_uses" => raw
                .integer_in(1..=1000)
                .map(|uses| self.step_up.ticket_uses = uses as u32),
            "step_up.attested_challenges" => raw.strings().and_then(|kinds| {
                if kinds
                    .iter()
                    .any(|kind| kind == crate::step_up::ADMIN_APPROVAL)
                {
                    Err(invalid(
                        "`admin_approval` is completed by an operator, never attested by the AS",
                    ))
                } else {
                    self.step_up.attested_challenges = kinds;
                    Ok(())
                }
            }),
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
            "cimd.max_in_flight_per_domain" => raw
                .integer_in(1..=1000)
                .map(|count| self.cimd.max_in_flight_per_domain = count as usize),
            "cimd.failure_backoff_ms" => raw
                .integer_in(0..=300_000)
                .map(|ms| self.cimd.failure_backoff = Duration::from_millis(ms)),
            "cimd.slot_wait_ms" => raw
                .integer_in(0..=60_000)
                .map(|ms| self.cimd.slot_wait = Duration::from_millis(ms)),
            "cimd.allowed_ports" => raw.integers().and_then(|ports| {
                let ports = ports
                    .into_iter()
                    .map(|port| {
                        u16::try_from(port)
                            .ok()
                            .filter(|port| *port != 0)
                            .ok_or_else(|| invalid(format!("`{port}` is not a TCP port (1–65535)")))
                    })
                    .collect::<Result<Vec<u16>, _>>()?;
                self.cimd.allowed_ports = ports;
                Ok(())
            }),
            "cimd.max_in_flight_per_host" => raw
                .integer_in(1..=1000)
                .map(|count| self.cimd.max_in_flight_per_host = count as usize),
            // At most 30 days (F-19): a document is fetched again within a month however
            // long its cache headers say, and `now + lifetime` can never overflow.
            "cimd.cache_min_secs" => raw
                .integer_in(0..=2_592_000)
                .map(|secs| self.cimd.cache_min = Duration::from_secs(secs)),
            "cimd.cache_max_secs" => raw
                .integer_in(1..=2_592_000)
                .map(|secs| self.cimd.cache_max = Duration::from_secs(secs)),
            "cimd.refresh_secs" => raw
                .integer_in(1..=2_592_000)
                .map(|secs| self.cimd.refresh = Duration::from_secs(secs)),
            "cimd.supported_grant_types" => raw
                .strings()
                .map(|grants| self.cimd.supported_grant_types = grants),
            "cimd.allow_loopback" => raw.boolean().map(|allow| self.cimd.allow_loopback = allow),
            "cimd.deny_cidrs" => raw.strings().and_then(|ranges| {
                let cidrs = ranges
                    .iter()
                    .map(|range| range.parse::<crate::address::Cidr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                self.cimd.deny_cidrs = cidrs;
                Ok(())
            }),
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
                        .map_err(|_| {
                            invalid(format!("`{host}` = `{address}` is not an ip or ip:port"))
                        })?;
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
                    return Err(invalid(format!(
                        "{bad} is not a window of 60..=2592000 seconds"
                    )));
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
                        Some(bad) => Err(invalid(format!(
                            "`{bad}` is not allowed: only asymmetric algorithms verify a statement"
                        ))),
                        None => {
                            self.software_statements.algorithms = algorithms;
                            Ok(())
                        }
                    }
                })
            }
            "software_statements.require_exp" => raw
                .boolean()
                .map(|require| self.software_statements.require_exp = require),
            "software_statements.audience" => raw.string().map(|audience| {
                self.software_statements.audience = (!audience.is_empty()).then_some(audience);
            }),
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
            "server.allow_insecure" => raw
                .boolean()
                .map(|allow| self.server.allow_insecure = allow),
            "tls.cert_file" => raw.string().map(|path| {
                self.tls.cert_file = (!path.is_empty()).then(|| PathBuf::from(path));
            }),
            "tls.key_file" => raw.string().map(|path| {
                self.tls.key_file = (!path.is_empty()).then(|| PathBuf::from(path));
            }),
            "tls.client_ca_file" => raw.string().map(|path| {
                self.tls.client_ca_file = (!path.is_empty()).then(|| PathBuf::from(path));
            }),
            "auth.reflection_requires_auth" => raw
                .boolean()
                .map(|required| self.auth.reflection_requires_auth = required),
            "auth.tokens" => raw.tables().map(|tables| {
                self.auth.tokens = tokens(source, &tables, errors);
            }),
            "auth.clients" => raw.tables().map(|tables| {
                self.auth.clients = clients(source, &tables, errors);
            }),
            "log.level" => raw.string().and_then(|level| {
                check_log_level(&level)?;
                self.log.level = level;
                Ok(())
            }),
            "log.decisions" => raw.string().and_then(|text| {
                self.log.decisions = match text.as_str() {
                    "off" => DecisionExport::Off,
                    "stdout" => DecisionExport::Stdout,
                    "file" => DecisionExport::File,
                    _ => return Err(invalid(format!("`{text}` is not one of off, stdout, file"))),
                };
                Ok(())
            }),
            "log.decisions_file" => raw.string().and_then(|path| {
                if path.is_empty() {
                    return Err(invalid("name the file"));
                }
                self.log.decisions_file = PathBuf::from(path);
                Ok(())
            }),
            "log.decisions_max_mib" => raw
                .integer_in(1..=102_400)
                .map(|mib| self.log.decisions_max_bytes = mib * MIB),
            "log.decisions_keep" => raw
                .integer_in(1..=1000)
                .map(|keep| self.log.decisions_keep = keep as u32),
            "notify.webhooks" => raw.tables().map(|tables| {
                self.notify.webhooks = webhooks(source, &tables, errors);
            }),
            "notify.max_attempts" => raw
                .integer_in(1..=50)
                .map(|attempts| self.notify.delivery.max_attempts = attempts as u32),
            "notify.backoff_ms" => raw
                .integer_in(1..=600_000)
                .map(|ms| self.notify.delivery.backoff = Duration::from_millis(ms)),
            "notify.timeout_secs" => raw
                .integer_in(1..=300)
                .map(|secs| self.notify.delivery.timeout = Duration::from_secs(secs)),
            "notify.queue" => raw
                .integer_in(1..=1_000_000)
                .map(|queue| self.notify.delivery.queue = queue as usize),
            "notify.console_url" => raw.string().and_then(|text| {
                if text.is_empty() {
                    self.notify.console_url = None;
                    return Ok(());
                }
                url::Url::parse(&text)
                    .map_err(|error| invalid(format!("`{text}` is not a URL: {error}")))?;
                self.notify.console_url = Some(text);
                Ok(())
            }),
            "console.enabled" => raw.boolean().map(|enabled| self.console.enabled = enabled),
            "console.session_ttl_secs" => raw
                .integer_in(60..=604_800)
                .map(|secs| self.console.session_ttl = Duration::from_secs(secs)),
            "log.format" => raw.string().and_then(|text| {
                self.log.format = match text.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(invalid(format!("`{text}` is not one of text, json"))),
                };
                Ok(())
            }),
            _ => return Err(Unknown),
        };
        if let Err(error) = result {
            errors.push(ConfigError {
                source: source.to_owned(),
                key: key.to_owned(),
                message: error.to_string(),
            });
        }
        Ok(())
    }
}

/// A configuration that loaded, and what was ignored on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// `CLIENTGATE_*` variables that name no setting.
    pub warnings: Vec<ConfigError>,
}

/// The key is not a setting at all.
#[derive(Debug)]
struct Unknown;

fn unknown(source: &str, key: &str) -> ConfigError {
    ConfigError {
        source: source.to_owned(),
        key: key.to_owned(),
        message: "not a clientgate setting".to_owned(),
    }
}

fn invalid(message: impl Into<String>) -> ValueError {
    ValueError::Invalid(message.into())
}

/// A `log.level` filter whose every directive names a level: `info`, `warn,clientgate=debug`.
/// A bare word that is not a level would be read by `tracing` as a target at `trace` —
/// a typo such as `infoo` would then log nothing at all.
fn check_log_level(filter: &str) -> Result<(), ValueError> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |text: &str| LEVELS.contains(&text.trim().to_ascii_lowercase().as_str());
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None => directive,
        };
        if !is_level(level) {
            return Err(invalid(format!(
                "`{directive}` names no level (one of {}); a target takes one too, as in `clientgate=debug`",
                LEVELS.join(", ")
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|error| invalid(error.to_string()))
}
