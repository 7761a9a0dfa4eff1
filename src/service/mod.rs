//! The gRPC edge: services that map calls to the engine and back, and the server that
//! hosts them with health and reflection. No decision logic lives here.

mod admin;
mod convert;
mod registration;
mod reload;
mod step_up;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

pub use admin::AdminApi;
pub use registration::RegistrationApi;
pub use reload::fits_settings;
pub use step_up::StepUpApi;

use crate::cimd::cache::CacheBounds;
use crate::cimd::fetch::{FetchSettings, Fetcher, FetcherError};
use crate::cimd::source::CimdSource;
use crate::config::Config;
use crate::engine::{Engine, EngineSettings};
use crate::policy::{LoadErrors, PolicyBundle, load_policy_dir_with};
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::registration_service_server::RegistrationServiceServer;
use crate::proto::step_up_service_server::StepUpServiceServer;
use crate::registration::software_statement::TrustedIssuers;
use crate::store::{CompactionPolicy, PruneCutoffs, SledStore, Store, StoreError, StoreStats};

/// Room for the rest of an Evaluate message around its metadata.
const MESSAGE_OVERHEAD_BYTES: usize = 16 * 1024;

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the policies in `{dir}` do not load:\n{errors}")]
    Policies { dir: String, errors: LoadErrors },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Loads the policies, opens the store, binds `config.server.listen` and serves until
/// `shutdown` resolves; then lets in-flight calls finish and flushes the store.
/// `on_listening` receives the bound address (useful with port 0). Returns what the store
/// recorded while serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<StoreStats, ServeError> {
    let settings = engine_settings(&config)?;
    let load = |dir: &std::path::Path| {
        load_policy_dir_with(dir, &config.vocabulary())
            .and_then(|bundle| reload::fits_settings(bundle, dir, &settings))
            .map_err(|errors| ServeError::Policies {
                dir: dir.display().to_string(),
                errors,
            })
    };
    let policies = load(&config.policy.dir)?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open_with(
        &config.store.dir,
        CompactionPolicy {
            above_bytes: config.store.compact_above_bytes,
        },
    )?);
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.server.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.server.listen,
        source,
    })?;
    info!(
        %addr,
        policy_version = %policies.version,
        policies = policies.policy_count(),
        profile = config.validation.profile.as_str(),
        data = %config.store.dir.display(),
        "clientgate listening"
    );
    let shadow = match &config.policy.shadow_dir {
        Some(dir) => Some(load(dir)?),
        None => None,
    };
    let engine = Arc::new(build_engine(&config, policies, store.clone())?);
    if let Some(shadow) = shadow {
        info!(version = %shadow.version, dir = ?config.policy.shadow_dir, "shadow policies loaded");
        engine.replace_shadow(Some(shadow));
    }
    let reloader = Arc::new(reload::PolicyReloader::new(
        engine.clone(),
        config.policy.dir.clone(),
        config.policy.shadow_dir.clone(),
        config.vocabulary(),
    ));
    let mut background = Vec::new();
    if config.policy.watch {
        background.push(tokio::spawn(reload::watch(
            reloader.clone(),
            config.policy.reload_debounce,
        )));
    }
    #[cfg(unix)]
    background.push(tokio::spawn(reload::reload_on_hangup(reloader.clone())));
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RegistrationServiceServer<RegistrationApi>>()
        .await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<StepUpServiceServer<StepUpApi>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let max_message = config.server.max_metadata_bytes + MESSAGE_OVERHEAD_BYTES;
    let registration = RegistrationServiceServer::new(RegistrationApi::new(
        engine.clone(),
        config.server.max_metadata_bytes,
    ))
    .max_decoding_message_size(max_message);
    let admin = AdminServiceServer::new(AdminApi::new(
        engine.clone(),
        config.validation.profile,
        reloader,
    ));
    let step_ups = StepUpServiceServer::new(StepUpApi::new(engine.clone()));
    let sweeper = tokio::spawn(expire_tickets_periodically(store.clone()));
    let pruner = tokio::spawn(prune_periodically(store.clone(), config.clone()));
    on_listening(addr);
    let (stopping_sender, stopping_receiver) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        shutdown.await;
        info!("shutting down: finishing in-flight calls");
        health
            .set_not_serving::<RegistrationServiceServer<RegistrationApi>>()
            .await;
        let _ = stopping_sender.send(());
    };
    // Without TCP_NODELAY, small gRPC responses wait out delayed ACKs (~40 ms each).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let serving = Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(registration)
        .add_service(admin)
        .add_service(step_ups)
        .serve_with_incoming_shutdown(incoming, stopping);
    let grace = config.server.shutdown_grace;
    let grace_over = async move {
        if stopping_receiver.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = serving => served?,
        () = grace_over => warn!(
            grace_secs = grace.as_secs(),
            "in-flight calls did not finish within the shutdown grace period; stopping anyway"
        ),
    }
    sweeper.abort();
    pruner.abort();
    for task in background {
        task.abort();
    }
    store.flush().await?;
    let stats = store.stats();
    info!(
        decisions_recorded = stats.decisions_recorded,
        flushes = stats.flushes,
        "store flushed; stopped"
    );
    Ok(stats)
}

/// Marks pending tickets past their expiry as expired, every half minute. Reads already see
/// them as expired; this keeps the stored state and `ListStepUps` filters in step.
async fn expire_tickets_periodically(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        every.tick().await;
        let now = crate::vocab::millis(std::time::SystemTime::now());
        match store.expire_tickets(now) {
            Ok(0) => {}
            Ok(expired) => info!(expired, "step-up tickets expired"),
            Err(error) => warn!(%error, "cannot expire step-up tickets"),
        }
    }
}

/// Why the pipeline could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Fetcher(#[from] FetcherError),
    #[error("invalid `software_statements`: {0}")]
    TrustedIssuers(String),
}

/// Deletes what retention no longer keeps, every `retention.prune_every`.
async fn prune_periodically(store: Arc<dyn Store>, config: Config) {
    let mut every = tokio::time::interval(config.retention.prune_every);
    loop {
        every.tick().await;
        let cutoffs = prune_cutoffs(&config, std::time::SystemTime::now());
        let pruning = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.prune(cutoffs)).await
        };
        match pruning {
            Ok(Ok(report)) => {
                if let Some(compaction) = report.compaction {
                    info!(
                        before_bytes = compaction.before_bytes,
                        after_bytes = compaction.after_bytes,
                        replayed = compaction.replayed,
                        writes_paused_ms = compaction.writes_paused.as_millis() as u64,
                        took_ms = compaction.took.as_millis() as u64,
                        "compacted the store"
                    );
                }
                info!(
                    decisions = report.decisions,
                    tickets = report.tickets,
                    rate_buckets = report.rate_buckets,
                    fingerprints = report.fingerprints,
                    size_on_disk = store.size_on_disk().unwrap_or(0),
                    "pruned"
                )
            }
            Ok(Err(error)) => warn!(%error, "pruning failed"),
            Err(error) => warn!(%error, "the pruning task failed"),
        }
    }
}

/// What retention keeps at `now`: decisions and tickets for their configured ages, rate
/// buckets for the longest window.
pub fn prune_cutoffs(config: &Config, now: std::time::SystemTime) -> PruneCutoffs {
    let before =
        |age: std::time::Duration| crate::vocab::millis(now).saturating_sub(age.as_millis() as u64);
    let longest_window = config
        .rates
        .windows
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    PruneCutoffs {
        decisions_ms: before(config.retention.decisions),
        tickets_ms: before(config.retention.tickets),
        rates_ms: before(longest_window + std::time::Duration::from_secs(60)),
    }
}

/// The pipeline for `config` with these policies and this store.
pub fn build_engine(
    config: &Config,
    policies: PolicyBundle,
    store: Arc<dyn Store>,
) -> Result<Engine, EngineError> {
    let settings = engine_settings(config)?;
    let fetcher = Fetcher::new(fetch_settings(config))?;
    let bounds = CacheBounds {
        min: config.cimd.cache_min,
        max: config.cimd.cache_max,
    };
    let cimd = CimdSource::new(fetcher, store.clone(), bounds);
    Ok(Engine::new(policies, store, cimd, settings))
}

/// The pipeline's settings, from the configuration; reads the trusted issuers' key files.
pub fn engine_settings(config: &Config) -> Result<EngineSettings, EngineError> {
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
        |path| {
            std::fs::read_to_string(path).map_err(|error| format!("cannot read `{path}`: {error}"))
        },
    )
    .map_err(EngineError::TrustedIssuers)?;
    Ok(EngineSettings {
        profile: config.validation.profile,
        attested_challenges: config.step_up.attested_challenges.clone(),
        step_up_ttl: config.step_up.ticket_ttl,
        cimd_supported_grant_types: config.cimd.supported_grant_types.clone(),
        cimd_allow_loopback: config.cimd.allow_loopback,
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
        allow_loopback: config.cimd.allow_loopback,
        ca_file: config.cimd.ca_file.clone(),
        resolve: config
            .cimd
            .resolve
            .iter()
            .map(|(host, addr)| (host.clone(), *addr))
            .collect(),
    }
}
