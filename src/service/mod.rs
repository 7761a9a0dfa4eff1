//! The gRPC edge: services that map calls to the engine and back, and the server that
//! hosts them with health and reflection. No decision logic lives here.

mod admin;
mod console;
mod convert;
mod gate;
mod listener;
mod registration;
mod step_up;
mod tls;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tracing::{info, warn};

pub use admin::AdminApi;
pub use registration::RegistrationApi;
pub use step_up::StepUpApi;

use gate::Gate;

use crate::app::{App, AppError, maintenance, reload};
use crate::config::{Config, ListenAddr};
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::registration_service_server::RegistrationServiceServer;
use crate::proto::step_up_service_server::StepUpServiceServer;
use crate::store::{StoreError, StoreStats};

/// How often the TLS certificate files are checked for a change.
const CERTIFICATE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Room for the rest of an Evaluate message around its metadata.
const MESSAGE_OVERHEAD_BYTES: usize = 16 * 1024;
/// The largest admin or step-up request decoded (F-3): their fields are ids, filters and
/// a note of at most 2,000 characters.
const ADMIN_MESSAGE_BYTES: usize = 64 * 1024;

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Assembles clientgate from `config`, binds `config.server.listen` (and
/// `server.admin_listen` when it is set apart) and serves until `shutdown` resolves; then
/// lets in-flight calls finish and flushes the store. `on_listening` receives the bound
/// decision address (useful with port 0). Returns what the store recorded while serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(ListenAddr),
) -> Result<StoreStats, ServeError> {
    let app = App::open(config)?;
    match listener::raise_open_files_limit() {
        Ok(limit) => info!(open_files = limit, "open-file limit"),
        Err(error) => warn!(%error, "cannot raise the open-file limit"),
    }
    let tls = tls::acceptor(&app.config.tls)?;
    let mode = app.config.server.socket_mode;
    let (decision_listener, addr) = bind(&app.config.server.listen, mode).await?;
    let admin = match &app.config.server.admin_listen {
        Some(admin_addr) => Some(bind(admin_addr, mode).await?),
        None => None,
    };
    let policies = app.engine.policies();
    info!(
        %addr,
        admin_addr = %admin.as_ref().map_or(&addr, |(_, admin_addr)| admin_addr),
        policy_version = %policies.version,
        policies = policies.policy_count(),
        profile = app.config.validation.profile.as_str(),
        data = %app.config.store.dir.display(),
        "clientgate listening"
    );
    let mut background = spawn_background(&app);
    if let Some((_, certificates)) = &tls {
        background.push(tokio::spawn(tls::watch(
            certificates.clone(),
            CERTIFICATE_CHECK_EVERY,
        )));
    }
    let acceptor = tls.map(|(acceptor, _)| acceptor);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RegistrationServiceServer<RegistrationApi>>()
        .await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<StepUpServiceServer<StepUpApi>>().await;
    background.push(tokio::spawn(report_store_health(
        app.store.clone(),
        health.clone(),
    )));
    on_listening(addr.clone());
    let (stopping_sender, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        info!("shutting down: finishing in-flight calls");
        health
            .set_not_serving::<RegistrationServiceServer<RegistrationApi>>()
            .await;
        let _ = stopping_sender.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let reflection_gate = app
        .config
        .auth
        .reflection_requires_auth
        .then(|| Gate::new(app.credentials.clone()));
    let tls_on = acceptor.is_some();
    let decisions = Routes::new(decision_api(&app)).add_service(health_service.clone());
    let (decisions, decisions_http1, admin_serving) = match admin {
        None => (
            with_admin(decisions, &app, tls_on),
            app.config.console.enabled,
            None,
        ),
        Some((admin_listener, _)) => {
            let routes = with_reflection(
                with_admin(Routes::new(health_service), &app, tls_on),
                reflection_gate.clone(),
            )?;
            let serving = serve(
                &app,
                routes,
                admin_listener,
                acceptor.clone(),
                app.config.console.enabled,
                stopped(stopping.clone()),
            );
            (decisions, false, Some(serving))
        }
    };
    let decision_serving = serve(
        &app,
        with_reflection(decisions, reflection_gate)?,
        decision_listener,
        acceptor,
        decisions_http1,
        stopped(stopping.clone()),
    );
    let serving = async move {
        match admin_serving {
            Some(admin_serving) => tokio::try_join!(decision_serving, admin_serving).map(drop),
            None => decision_serving.await,
        }
    };
    let grace = app.config.server.shutdown_grace;
    let grace_over = async move {
        stopped(stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serving => served?,
        () = grace_over => warn!(
            grace_secs = grace.as_secs(),
            "in-flight calls did not finish within the shutdown grace period; stopping anyway"
        ),
    }
    for task in background {
        task.abort();
    }
    app.store.flush().await?;
    if let Some(exporter) = &app.exporter
        && !exporter.flush(std::time::Duration::from_secs(5))
    {
        warn!("the decision export did not finish writing within 5 s");
    }
    let stats = app.store.stats();
    info!(
        decisions_recorded = stats.decisions_recorded,
        decisions_shed = stats.decisions_shed,
        flushes = stats.flushes,
        "store flushed; stopped"
    );
    Ok(stats)
}

/// A bound listener.
enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

/// A listener on `addr` and the address it got (the port, when `addr` asks for 0). A Unix
/// socket left by an earlier run is replaced, one that answers is refused; `mode` sets
/// its permissions.
async fn bind(addr: &ListenAddr, mode: Option<u32>) -> Result<(Listener, ListenAddr), ServeError> {
    let failed = |source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    };
    match addr {
        ListenAddr::Tcp(tcp) => {
            let listener = TcpListener::bind(tcp).await.map_err(failed)?;
            let bound = listener.local_addr().map_err(failed)?;
            Ok((Listener::Tcp(listener), ListenAddr::Tcp(bound)))
        }
        #[cfg(unix)]
        ListenAddr::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            if let Ok(existing) = std::fs::symlink_metadata(path) {
                // Only a socket left by an earlier run is replaced: never a file, a link
                // or a socket another process still answers on.
                if !existing.file_type().is_socket() {
                    return Err(failed(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the path exists and is not a socket",
                    )));
                }
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    return Err(failed(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another process answers on this socket",
                    )));
                }
                std::fs::remove_file(path).map_err(failed)?;
            }
            let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
            if let Some(mode) = mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(failed)?;
            }
            Ok((Listener::Unix(listener), addr.clone()))
        }
        #[cfg(not(unix))]
        ListenAddr::Unix(_) => Err(failed(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "Unix sockets need a Unix system",
        ))),
    }
}

type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves `routes` on `listener` (over TLS when `tls` is set and the listener is TCP),
/// within the configured limits, until `stopped`; `http1` also for HTTP/1.1 callers (the
/// admin HTTP surface).
fn serve(
    app: &App,
    routes: Routes,
    listener: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http1: bool,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Serving {
    let limits = listener::Limits {
        max_connections: app.config.server.max_connections,
        first_byte: app.config.server.first_byte_timeout,
    };
    let router = server(app).accept_http1(http1).add_routes(routes);
    match listener {
        Listener::Tcp(tcp) => match tls {
            Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
                listener::incoming_tls(tcp, limits, acceptor),
                stopped,
            )),
            None => Box::pin(
                router.serve_with_incoming_shutdown(listener::incoming_tcp(tcp, limits), stopped),
            ),
        },
        #[cfg(unix)]
        Listener::Unix(unix) => Box::pin(
            router.serve_with_incoming_shutdown(listener::incoming_unix(unix, limits), stopped),
        ),
    }
}

/// A server with the configured per-connection limits, per-call deadline and keepalive.
fn server(app: &App) -> Server {
    let limits = &app.config.server;
    Server::builder()
        .concurrency_limit_per_connection(limits.max_concurrent_streams)
        .max_concurrent_streams(Some(limits.max_concurrent_streams as u32))
        .timeout(limits.call_timeout)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive))
}

/// `RegistrationService` over the assembled engine: the decision API.
fn decision_api(app: &App) -> RegistrationServiceServer<RegistrationApi> {
    let max_message = app.config.server.max_metadata_bytes + MESSAGE_OVERHEAD_BYTES;
    RegistrationServiceServer::new(RegistrationApi::new(
        app.engine.clone(),
        app.config.server.max_metadata_bytes,
        Gate::new(app.credentials.clone()),
    ))
    .max_decoding_message_size(max_message)
}

/// `routes` with `AdminService` and `StepUpService`, the admin API, and (unless
/// `console.enabled = false`) the admin HTTP surface: console, metrics, probes.
fn with_admin(routes: Routes, app: &App, tls: bool) -> Routes {
    let gate = Gate::new(app.credentials.clone());
    let admin = AdminServiceServer::new(AdminApi::new(
        app.engine.clone(),
        app.config.validation.profile,
        app.reloader.clone(),
        gate.clone(),
    ));
    let step_ups = StepUpServiceServer::new(StepUpApi::new(app.engine.clone(), gate))
        .max_decoding_message_size(ADMIN_MESSAGE_BYTES);
    let routes = routes
        .add_service(admin.max_decoding_message_size(ADMIN_MESSAGE_BYTES))
        .add_service(step_ups);
    if !app.config.console.enabled {
        return routes;
    }
    let console = console::router(console::Console {
        engine: app.engine.clone(),
        reloader: app.reloader.clone(),
        gate: Gate::new(app.credentials.clone()),
        notifier: app.notifier.clone(),
        tls,
        session_ttl: app.config.console.session_ttl,
    });
    Routes::from(routes.into_axum_router().merge(console))
}

/// `routes` with gRPC server reflection, v1 and v1alpha (grpcurl speaks either), for the
/// clientgate and health protocols.
fn with_reflection(routes: Routes, gate: Option<Gate>) -> Result<Routes, ServeError> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let Some(gate) = gate else {
        return Ok(routes.add_service(v1).add_service(v1alpha));
    };
    // `auth.reflection_requires_auth`: only known callers may list the services.
    let known = move |request: tonic::Request<()>| match gate.identify(&request) {
        Ok(_) => Ok(request),
        Err(error) => Err(tonic::Status::from(error)),
    };
    Ok(routes
        .add_service(tonic::service::interceptor::InterceptedService::new(
            v1,
            known.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            v1alpha, known,
        )))
}

/// The reload triggers (directory watch, SIGHUP) and the maintenance loops.
fn spawn_background(app: &App) -> Vec<tokio::task::JoinHandle<()>> {
    let mut background = Vec::new();
    if app.config.policy.watch {
        background.push(tokio::spawn(reload::watch(
            app.reloader.clone(),
            app.config.policy.reload_debounce,
        )));
    }
    #[cfg(unix)]
    background.push(tokio::spawn(reload::reload_on_hangup(app.reloader.clone())));
    background.push(tokio::spawn(maintenance::expire_tickets_periodically(
        app.store.clone(),
    )));
    background.push(tokio::spawn(maintenance::prune_periodically(
        app.store.clone(),
        app.config.clone(),
    )));
    background
}

/// Reports the decision API `NOT_SERVING` while the store is out of service (a full disk) and
/// `SERVING` again once it reopens, as the store says it changes. Only changes are reported,
/// so a shutdown's `NOT_SERVING` stays.
async fn report_store_health(
    store: std::sync::Arc<dyn crate::store::Store>,
    health: tonic_health::server::HealthReporter,
) {
    let Some(mut serving) = store.serving() else {
        return;
    };
    let mut said = true;
    loop {
        let now = *serving.borrow_and_update();
        if now != said {
            said = now;
            let status = if now {
                info!("the store is back: the decision API is serving");
                tonic_health::ServingStatus::Serving
            } else {
                warn!("the store is out of service: the decision API reports NOT_SERVING");
                tonic_health::ServingStatus::NotServing
            };
            // The server as a whole ("", what probes ask by default) and the decision API.
            health.set_service_status("", status).await;
            health
                .set_service_status(
                    <RegistrationServiceServer<RegistrationApi> as tonic::server::NamedService>::NAME,
                    status,
                )
                .await;
        }
        if serving.changed().await.is_err() {
            return;
        }
    }
}
