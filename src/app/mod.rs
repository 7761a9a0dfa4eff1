//! Assembling clientgate from a configuration, below the gRPC edge and the command line:
//! the engine's settings (trusted software-statement issuers read once), the fetcher's,
//! the policy sets checked against the settings, the store, the hot reloader and the
//! background maintenance (ticket expiry, retention). `service` serves what is built here;
//! `cli` (`check`, `eval`, `test`, `bench`) builds the same settings and policies offline.

pub mod maintenance;
pub mod reload;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use std::net::SocketAddr;

use tracing::{info, warn};

use crate::auth::{ClientEntry, Credentials, TokenEntry, token_digest};
use crate::cimd::cache::CacheBounds;
use crate::cimd::fetch::{FetchSettings, Fetcher, FetcherError};
use crate::cimd::source::CimdSource;
use crate::config::{Config, ListenAddr, StoreBackend, TokenSecret, WebhookSecret};
use crate::engine::{Engine, EngineSettings, check_context};
use crate::events::{Events, Sink};
use crate::export::Exporter;
use crate::metrics::Metrics;
use crate::notify::{Notifier, Webhook};
use crate::policy::{LoadError, LoadErrors, PolicyBundle, load_policy_dir_with};
use crate::registration::software_statement::{ClaimRules, IssuerError, TrustedIssuers};
use crate::store::{PgStore, Recovering, SledLimits, Store, StoreError};
use reload::PolicyReloader;

/// Why clientgate could not be assembled from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the policies in `{dir}` do not load:\n{errors}")]
    Policies { dir: String, errors: LoadErrors },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fetcher(#[from] FetcherError),
    #[error("invalid `software_statements`: {0}")]
    TrustedIssuers(#[from] IssuerError),
    #[error("cannot read the token file `{path}` of token `{name}`: {source}")]
    TokenFile {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the secret file `{path}` of webhook {url}: {source}")]
    SecretFile {
        url: String,
        path: String,
        source: std::io::Error,
    },
    #[error("the secret file `{path}` of webhook {url} holds fewer than 16 characters")]
    WeakSecret { url: String, path: String },
    #[error("cannot start the webhook client: {0}")]
    Webhooks(String),
    #[error("cannot open the decision export: {0}")]
    Export(std::io::Error),
    #[error(
        "clientgate will not serve `{addr}` beyond loopback {missing}: callers could approve \
         their own registrations and read the decision log. Listen on 127.0.0.1, or set \
         `tls.cert_file` and `tls.key_file` and configure `[[auth.tokens]]`, or (behind a \
         proxy that provides both) set `server.allow_insecure = true`"
    )]
    Insecure { addr: SocketAddr, missing: String },
}

/// clientgate assembled: the engine with its live (and shadow) policies, its store and
/// the reloader that replaces the policies.
pub struct App {
    pub config: Config,
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub reloader: Arc<PolicyReloader>,
    /// Who may call, and with which roles.
    pub credentials: Arc<Credentials>,
    /// The webhooks' queues, when any are configured.
    pub notifier: Option<Arc<Notifier>>,
    /// The decision export, when `log.decisions` is set.
    pub exporter: Option<Arc<Exporter>>,
}

impl App {
    /// Loads and checks the policy sets, opens the store and builds the engine. Nothing
    /// is listening yet.
    pub fn open(config: Config) -> Result<App, AppError> {
        let credentials = credentials(&config)?;
        if let Some(warning) = exposure(&config, &credentials)? {
            warn!("{warning}");
        }
        if credentials == Credentials::Open {
            info!("no [[auth.tokens]] configured: callers are not authenticated (loopback only)");
        }
        for warning in development_switches(&config) {
            warn!("{warning}");
        }
        let settings = engine_settings(&config)?;
        let policies = load_policies(&config, &settings, &config.policy.dir)?;
        let shadow = match &config.policy.shadow_dir {
            Some(dir) => Some(load_policies(&config, &settings, dir)?),
            None => None,
        };
        let store: Arc<dyn Store> = match config.store.backend {
            StoreBackend::Sled => Arc::new(Recovering::open(
                &config.store.dir,
                SledLimits {
                    above_bytes: config.store.compact_above_bytes,
                    max_size_bytes: config.store.max_size_bytes,
                },
            )?),
            StoreBackend::Postgres => Arc::new(PgStore::connect(&config.store.postgres)?),
        };
        let metrics = Arc::new(Metrics::default());
        let notifier = notifier(&config, metrics.clone())?;
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(notifier) = &notifier {
            sinks.push(notifier.clone());
        }
        let exporter = match config.log.export_target() {
            Some(target) => Some(Arc::new(
                Exporter::start(target, metrics.clone()).map_err(AppError::Export)?,
            )),
            None => None,
        };
        if let Some(exporter) = &exporter {
            sinks.push(exporter.clone());
        }
        let engine = Arc::new(
            build_engine(&config, settings, policies, store.clone())?
                .with_events(Events::new(metrics, sinks)),
        );
        if let Some(shadow) = shadow {
            info!(version = %shadow.version, dir = ?config.policy.shadow_dir, "shadow policies loaded");
            engine.replace_shadow(Some(shadow));
        }
        let reloader = Arc::new(PolicyReloader::new(
            engine.clone(),
            config.policy.dir.clone(),
            config.policy.shadow_dir.clone(),
            config.vocabulary(),
        ));
        Ok(App {
            config,
            engine,
            store,
            reloader,
            credentials: Arc::new(credentials),
            notifier,
            exporter,
        })
    }
}

/// The webhooks of `[[notify.webhooks]]`, their secrets read, delivering on the current
/// runtime; `None` when none is configured.
fn notifier(config: &Config, metrics: Arc<Metrics>) -> Result<Option<Arc<Notifier>>, AppError> {
    if config.notify.webhooks.is_empty() {
        return Ok(None);
    }
    let mut webhooks = Vec::new();
    for hook in &config.notify.webhooks {
        let secret = match &hook.secret {
            WebhookSecret::Inline(secret) => secret.as_bytes().to_vec(),
            WebhookSecret::File(path) => {
                let secret = std::fs::read_to_string(path)
                    .map_err(|source| AppError::SecretFile {
                        url: crate::notify::shown(&hook.url),
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim_end()
                    .as_bytes()
                    .to_vec();
                if secret.len() < 16 {
                    return Err(AppError::WeakSecret {
                        url: crate::notify::shown(&hook.url),
                        path: path.display().to_string(),
                    });
                }
                secret
            }
        };
        webhooks.push(Webhook {
            url: hook.url.clone(),
            events: hook.events.clone(),
            secret,
            format: hook.format,
        });
    }
    let notifier = Notifier::start(
        webhooks,
        config.notify.delivery,
        config.notify.console_url.clone(),
        metrics,
    )
    .map_err(|error| AppError::Webhooks(error.to_string()))?;
    Ok(Some(Arc::new(notifier)))
}

/// The configured callers: `Open` when no token is configured; a `token_file` is read now.
pub fn credentials(config: &Config) -> Result<Credentials, AppError> {
    if config.auth.tokens.is_empty() && config.auth.clients.is_empty() {
        return Ok(Credentials::Open);
    }
    let mut tokens = Vec::new();
    for token in &config.auth.tokens {
        let sha256 = match &token.secret {
            TokenSecret::Sha256(digest) => *digest,
            TokenSecret::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AppError::TokenFile {
                    name: token.name.clone(),
                    path: path.display().to_string(),
                    source,
                })?;
                token_digest(text.trim_end())
            }
        };
        tokens.push(TokenEntry {
            name: token.name.clone(),
            sha256,
            roles: token.roles.clone(),
        });
    }
    let clients = config
        .auth
        .clients
        .iter()
        .map(|client| ClientEntry {
            subject: client.subject.clone(),
            roles: client.roles.clone(),
        })
        .collect();
    Ok(Credentials::Known { tokens, clients })
}

/// Whether clientgate may serve `server.listen` as configured. Loopback and Unix sockets are
/// always allowed; beyond them, TLS and tokens are needed, or `server.allow_insecure`, which
/// is then said at every start. `Ok(Some(warning))` when it serves insecurely by choice.
pub fn exposure(config: &Config, credentials: &Credentials) -> Result<Option<String>, AppError> {
    let exposed = std::iter::once(&config.server.listen)
        .chain(config.server.admin_listen.as_ref())
        .find(|addr| !addr.is_local());
    let Some(ListenAddr::Tcp(addr)) = exposed.cloned() else {
        return Ok(None);
    };
    let missing = match (config.tls.is_on(), credentials) {
        (true, Credentials::Known { .. }) => return Ok(None),
        (true, Credentials::Open) => "without authentication",
        (false, Credentials::Open) => "without TLS and without authentication",
        (false, Credentials::Known { .. }) => "without TLS",
    };
    if config.server.allow_insecure {
        Ok(Some(format!(
            "serving `{addr}` {missing}, because `server.allow_insecure` is set"
        )))
    } else {
        Err(AppError::Insecure {
            addr,
            missing: missing.to_owned(),
        })
    }
}

/// A warning for each development switch that is on: each lets the fetcher reach this
/// machine or trust another root, which production must not.
pub fn development_switches(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.cimd.allow_loopback {
        warnings.push(
            "`cimd.allow_loopback` is on: CIMD documents may be fetched from this machine \
             (development only)"
                .to_owned(),
        );
    }
    if !config.cimd.resolve.is_empty() {
        let hosts: Vec<&str> = config.cimd.resolve.keys().map(String::as_str).collect();
        warnings.push(format!(
            "`cimd.resolve` is set: {} resolve to configured addresses (development only)",
            hosts.join(", ")
        ));
    }
    if let Some(ca) = &config.cimd.ca_file {
        warnings.push(format!(
            "`cimd.ca_file` is set: `{}` is trusted for CIMD fetches (development only)",
            ca.display()
        ));
    }
    warnings
}

/// The policy set in `dir`, loaded with the configured vocabulary and refused unless it
/// fits the decision context these settings build.
pub fn load_policies(
    config: &Config,
    settings: &EngineSettings,
    dir: &Path,
) -> Result<PolicyBundle, AppError> {
    load_policy_dir_with(dir, &config.vocabulary())
        .and_then(|bundle| fits_settings(bundle, dir, settings))
        .map_err(|errors| AppError::Policies {
            dir: dir.display().to_string(),
            errors,
        })
}

/// Refuses a set whose schema does not fit the context decisions build (see
/// [`check_context`]), naming the schema file.
pub fn fits_settings(
    bundle: PolicyBundle,
    dir: &Path,
    settings: &EngineSettings,
) -> Result<PolicyBundle, LoadErrors> {
    match check_context(&bundle, settings) {
        Ok(()) => Ok(bundle),
        Err(mismatch) => Err(LoadErrors(vec![LoadError::plain(
            &dir.join("schema.cedarschema"),
            mismatch.to_string(),
        )])),
    }
}

/// The pipeline for `config` with these settings, policies and store.
pub fn build_engine(
    config: &Config,
    settings: EngineSettings,
    policies: PolicyBundle,
    store: Arc<dyn Store>,
) -> Result<Engine, AppError> {
    let fetcher = Fetcher::new(fetch_settings(config))?;
    let cimd = CimdSource::new(
        fetcher,
        store.clone(),
        cache_bounds(config),
        config.cimd.failure_backoff,
    );
    Ok(Engine::new(policies, store, cimd, settings))
}

/// The pipeline's settings, from the configuration; reads the trusted issuers' key files.
pub fn engine_settings(config: &Config) -> Result<EngineSettings, AppError> {
    let statements = &config.software_statements;
    let issuers: Vec<(String, String)> = statements
        .trusted
        .iter()
        .map(|(issuer, source)| (issuer.clone(), source.clone()))
        .collect();
    let trusted_issuers = TrustedIssuers::build(
        &issuers,
        &statements.algorithms,
        statements.leeway.as_secs(),
        |path| std::fs::read_to_string(path),
    )?
    .with_claims(ClaimRules {
        require_exp: statements.require_exp,
        audience: statements.audience.clone(),
    });
    Ok(EngineSettings {
        profile: config.validation.profile,
        attested_challenges: config.step_up.attested_challenges.clone(),
        step_up_ttl: config.step_up.ticket_ttl,
        ticket_uses: config.step_up.ticket_uses,
        cimd_supported_grant_types: config.cimd.supported_grant_types.clone(),
        cimd_addresses: config.cimd.addresses(),
        rate_windows: config.rates.windows.clone(),
        trusted_issuers,
    })
}

/// The fetcher's settings, from the configuration.
pub fn fetch_settings(config: &Config) -> FetchSettings {
    FetchSettings {
        connect_timeout: config.cimd.connect_timeout,
        total_timeout: config.cimd.total_timeout,
        max_bytes: config.cimd.max_document_bytes,
        max_in_flight: config.cimd.max_in_flight,
        max_in_flight_per_host: config.cimd.max_in_flight_per_host,
        max_in_flight_per_domain: config.cimd.max_in_flight_per_domain,
        slot_wait: config.cimd.slot_wait,
        allowed_ports: config.cimd.allowed_ports.clone(),
        addresses: config.cimd.addresses(),
        ca_file: config.cimd.ca_file.clone(),
        resolve: config
            .cimd
            .resolve
            .iter()
            .map(|(host, addr)| (host.clone(), *addr))
            .collect(),
    }
}

/// How long a fetched CIMD document may be reused, from the configuration.
pub fn cache_bounds(config: &Config) -> CacheBounds {
    CacheBounds {
        min: config.cimd.cache_min,
        max: config.cimd.cache_max,
        refresh: config.cimd.refresh,
    }
}
