//! Configuration: one typed struct with defaults, read from a TOML file, then
//! `CLIENTGATE_<SECTION>_<KEY>` environment variables, then command-line flags, each layer
//! overriding the one before. Every problem is reported at once, naming its key.
//!
//! [`Config::default`] is the one home of every default setting; where a module owns a
//! default list or bound (the CIMD grant types, the JWS algorithms, the cache bounds, the
//! compaction threshold) the default here names it instead of typing it again.
//!
//! - `raw.rs`: raw values (TOML or text) and their typed readers;
//! - `env.rs`: which environment variables are settings;
//! - `load.rs`: the layers in order, each key checked, all errors collected.

mod env;
mod load;
mod raw;
mod tables;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{ConfigError, ConfigErrors, LoadedConfig, Overrides};
pub use raw::ValueError;

use crate::auth::Role;
use crate::cimd::cache::CacheBounds;
use crate::registration::Profile;
use crate::store::SledLimits;

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
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub notify: NotifyConfig,
    pub console: ConsoleConfig,
}

/// `[notify]`: the webhooks told of step-ups and refused reloads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyConfig {
    /// `[[notify.webhooks]]`: `url`, `events`, `secret` or `secret_file`, `format`.
    pub webhooks: Vec<WebhookConfig>,
    /// `notify.max_attempts`, `notify.backoff_ms`, `notify.timeout_secs`, `notify.queue`.
    pub delivery: crate::notify::Delivery,
    /// `notify.console_url`: the console's address as operators reach it, for links.
    pub console_url: Option<String>,
}

/// One `[[notify.webhooks]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: url::Url,
    pub events: Vec<String>,
    pub secret: WebhookSecret,
    pub format: crate::notify::Format,
}

/// The key a webhook's requests are signed with.
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookSecret {
    /// `secret = "..."`.
    Inline(String),
    /// `secret_file = "<path>"`: read when clientgate starts (trailing whitespace ignored).
    File(PathBuf),
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookSecret::Inline(_) => write!(f, "Inline(..)"),
            WebhookSecret::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// `[console]`: the approvals console on the admin listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `console.enabled`: serve `/console` (and `/metrics`, `/healthz`, `/readyz`).
    pub enabled: bool,
    /// `console.session_ttl_secs`: how long a sign-in lasts.
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            enabled: true,
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

/// `[tls]`: TLS on every TCP listener, and client certificates when `client_ca_file` is set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsConfig {
    /// `tls.cert_file`, `tls.key_file`: the PEM certificate chain and its private key,
    /// read again when either file changes.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// `tls.client_ca_file`: PEM roots; every client must then present a certificate they
    /// issued.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn is_on(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    /// `unix:/path`: a Unix domain socket, reachable only through the file system.
    Unix(PathBuf),
}

impl ListenAddr {
    /// `host:port` or `unix:/path`.
    pub fn parse(text: &str) -> Option<ListenAddr> {
        match text.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Some(ListenAddr::Unix(PathBuf::from(path))),
            Some(_) => None,
            None => text.parse().ok().map(ListenAddr::Tcp),
        }
    }

    /// Whether only this machine can reach it: a loopback address or a Unix socket.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `[auth]`: who may call, and with which roles.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: `name`, `sha256` (hex of the token) or `token_file`, `roles`.
    /// None configured: callers are not authenticated, and clientgate serves on loopback
    /// only (`server.allow_insecure` aside).
    pub tokens: Vec<TokenConfig>,
    /// `[[auth.clients]]`: `subject` (a DNS name the client certificate is valid for) and
    /// `roles`; needs `tls.client_ca_file`.
    pub clients: Vec<ClientConfig>,
    /// `auth.reflection_requires_auth`: serve gRPC reflection only to known callers.
    pub reflection_requires_auth: bool,
}

/// One `[[auth.clients]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub subject: String,
    pub roles: Vec<Role>,
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenConfig {
    pub name: String,
    pub secret: TokenSecret,
    pub roles: Vec<Role>,
}

/// Where a token's digest comes from; neither form puts the token itself in the file.
#[derive(Clone, PartialEq)]
pub enum TokenSecret {
    /// `sha256 = "<64 hex digits>"`: the SHA-256 of the token.
    Sha256([u8; 32]),
    /// `token_file = "<path>"`: a file holding the token (trailing whitespace ignored),
    /// read when clientgate starts.
    File(PathBuf),
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSecret::Sha256(_) => write!(f, "Sha256(..)"),
            TokenSecret::File(path) => write!(f, "File({})", path.display()),
        }
    }
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
    /// `software_statements.require_exp`: refuse statements without `exp` (default true).
    pub require_exp: bool,
    /// `software_statements.audience`: this AS's name, which an `aud` claim must hold.
    pub audience: Option<String>,
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
    /// `cimd.max_in_flight_per_domain`: fetches at most to one registrable domain.
    pub max_in_flight_per_domain: usize,
    /// `cimd.slot_wait_ms`: how long a fetch waits for a slot before it fails as busy.
    pub slot_wait: Duration,
    /// `cimd.allowed_ports`: the ports a client_id may name (empty: any).
    pub allowed_ports: Vec<u16>,
    /// `cimd.failure_backoff_ms`: a URL whose fetch failed is not fetched again for this
    /// long, doubling with each failure in a row (0: always fetched).
    pub failure_backoff: Duration,
    /// `cimd.cache_min_secs`, `cimd.cache_max_secs`: bounds on HTTP freshness.
    pub cache_min: Duration,
    pub cache_max: Duration,
    /// `cimd.refresh_secs`: a cached document in use is fetched again (conditionally) once
    /// it is this old, even when its HTTP freshness lasts longer (CIMD -02 §4.4).
    pub refresh: Duration,
    /// `cimd.supported_grant_types`: what a CIMD client may keep.
    pub supported_grant_types: Vec<String>,
    /// `cimd.allow_loopback` (development only): fetch from 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// `cimd.deny_cidrs`: ranges never connected to besides the special-use set (a local
    /// NAT64 prefix, internal ranges inside public space).
    pub deny_cidrs: Vec<crate::address::Cidr>,
    /// `cimd.ca_file` (development only): an extra PEM trust root.
    pub ca_file: Option<PathBuf>,
    /// `cimd.resolve` (development only): `{ "host" = "ip" | "ip:port" }`.
    pub resolve: BTreeMap<String, SocketAddr>,
}

impl CimdConfig {
    /// Which addresses neither the fetcher nor a CIMD document's URIs may name.
    pub fn addresses(&self) -> crate::address::AddressRules {
        crate::address::AddressRules {
            allow_loopback: self.allow_loopback,
            deny: self.deny_cidrs.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// `server.listen`: the gRPC address of the decision API (`Evaluate`, health,
    /// reflection): `host:port`, or `unix:/path` for a Unix domain socket.
    pub listen: ListenAddr,
    /// `server.admin_listen`: where `AdminService` and `StepUpService` are served; `None`
    /// (an empty string) serves them on `listen` too.
    pub admin_listen: Option<ListenAddr>,
    /// `server.socket_mode`: the permissions of a Unix socket (`"0660"`); `None` leaves
    /// them to the umask.
    pub socket_mode: Option<u32>,
    /// `server.max_metadata_bytes`: the largest DCR `metadata_json` accepted.
    pub max_metadata_bytes: usize,
    /// `server.shutdown_grace_secs`: how long in-flight calls may run after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    /// `server.allow_insecure`: serve beyond loopback without TLS and authentication (behind
    /// a proxy that provides both). Logged as a warning at every start.
    pub allow_insecure: bool,
    /// `server.max_connections`: connections open at once per listener; one more is closed.
    pub max_connections: usize,
    /// `server.first_byte_timeout_ms`: a new connection that sends nothing this long is
    /// closed.
    pub first_byte_timeout: Duration,
    /// `server.max_concurrent_streams`: calls in flight at once on one connection.
    pub max_concurrent_streams: usize,
    /// `server.call_timeout_secs`: the deadline of every call.
    pub call_timeout: Duration,
    /// `server.keepalive_secs`: HTTP/2 pings this often; a peer that does not answer within
    /// the same time is disconnected.
    pub keepalive: Duration,
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
    /// `store.max_size_mib` (0: none): beyond this size on disk, repeated denials of
    /// malformed registrations of one fingerprint are sampled (one in a hundred recorded).
    pub max_size_bytes: u64,
    /// `store.backend`: `sled` (embedded, one process) or `postgres` (shared by replicas).
    pub backend: StoreBackend,
    /// `store.postgres_url` (also `CLIENTGATE_STORE_POSTGRES_URL`),
    /// `store.postgres_pool_size`, `store.postgres_statement_timeout_ms`,
    /// `store.postgres_ca_file` (TLS to the database).
    pub postgres: crate::store::PostgresSettings,
}

/// Where the store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    Sled,
    Postgres,
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
    /// `step_up.ticket_uses`: how many approvals one approved ticket gives.
    pub ticket_uses: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `log.level`: a tracing filter such as `info` or `clientgate=debug`.
    pub level: String,
    /// `log.format`: `text` or `json`.
    pub format: LogFormat,
    /// `log.decisions`: `off`, `stdout` or `file`.
    pub decisions: DecisionExport,
    /// `log.decisions_file` (default `decisions.jsonl`).
    pub decisions_file: PathBuf,
    /// `log.decisions_max_mib` (default 100): the size at which the file is rotated.
    pub decisions_max_bytes: u64,
    /// `log.decisions_keep` (default 5): rotated files kept.
    pub decisions_keep: u32,
}

/// `log.decisions`: where every decision is also written as a JSON line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionExport {
    Off,
    Stdout,
    File,
}

impl LogConfig {
    /// Where the decision export goes, if anywhere.
    pub fn export_target(&self) -> Option<crate::export::Target> {
        match self.decisions {
            DecisionExport::Off => None,
            DecisionExport::Stdout => Some(crate::export::Target::Stdout),
            DecisionExport::File => Some(crate::export::Target::File {
                path: self.decisions_file.clone(),
                max_bytes: self.decisions_max_bytes,
                keep: self.decisions_keep,
            }),
        }
    }
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
                listen: ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 50051))),
                admin_listen: None,
                socket_mode: None,
                max_metadata_bytes: 64 * 1024,
                shutdown_grace: Duration::from_secs(10),
                allow_insecure: false,
                max_connections: 4096,
                first_byte_timeout: Duration::from_secs(5),
                max_concurrent_streams: 128,
                call_timeout: Duration::from_secs(30),
                keepalive: Duration::from_secs(20),
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
                compact_above_bytes: SledLimits::default().above_bytes,
                max_size_bytes: 4096 * 1024 * 1024,
                backend: StoreBackend::Sled,
                postgres: crate::store::PostgresSettings {
                    url: String::new(),
                    pool_size: 16,
                    statement_timeout: Duration::from_secs(5),
                    ca_file: None,
                },
            },
            validation: ValidationConfig {
                profile: Profile::Mcp,
            },
            step_up: StepUpConfig {
                ticket_ttl: Duration::from_secs(24 * 3600),
                attested_challenges: crate::step_up::DEFAULT_ATTESTED_CHALLENGES
                    .iter()
                    .map(|kind| kind.to_string())
                    .collect(),
                ticket_uses: crate::step_up::DEFAULT_TICKET_USES,
            },
            cimd: CimdConfig {
                connect_timeout: Duration::from_secs(2),
                total_timeout: Duration::from_secs(5),
                max_document_bytes: 5 * 1024,
                max_in_flight: 64,
                max_in_flight_per_host: 4,
                max_in_flight_per_domain: 8,
                slot_wait: Duration::from_millis(500),
                allowed_ports: Vec::new(),
                failure_backoff: crate::cimd::source::DEFAULT_FAILURE_BACKOFF,
                cache_min: CacheBounds::default().min,
                cache_max: CacheBounds::default().max,
                refresh: CacheBounds::default().refresh,
                supported_grant_types: crate::cimd::document::DEFAULT_SUPPORTED_GRANT_TYPES
                    .iter()
                    .map(|grant| grant.to_string())
                    .collect(),
                allow_loopback: false,
                deny_cidrs: Vec::new(),
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
                require_exp: true,
                audience: None,
            },
            retention: RetentionConfig {
                decisions: Duration::from_secs(90 * 86_400),
                tickets: Duration::from_secs(30 * 86_400),
                prune_every: Duration::from_secs(3600),
            },
            log: LogConfig {
                level: "info".to_owned(),
                format: LogFormat::Text,
                decisions: DecisionExport::Off,
                decisions_file: PathBuf::from("decisions.jsonl"),
                decisions_max_bytes: 100 * MIB,
                decisions_keep: 5,
            },
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            notify: NotifyConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}
