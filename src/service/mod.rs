//! The gRPC edge: services that map calls to the engine and back, and the server that
//! hosts them with health and reflection. No decision logic lives here.

mod admin;
mod convert;
mod gate;
mod registration;
mod step_up;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

pub use admin::AdminApi;
pub use registration::RegistrationApi;
pub use step_up::StepUpApi;

use gate::Gate;

use crate::app::{App, AppError, maintenance, reload};
use crate::config::Config;
use crate::proto::admin_service_server::AdminServiceServer;
use crate::proto::registration_service_server::RegistrationServiceServer;
use crate::proto::step_up_service_server::StepUpServiceServer;
use crate::store::{StoreError, StoreStats};

/// Room for the rest of an Evaluate message around its metadata.
const MESSAGE_OVERHEAD_BYTES: usize = 16 * 1024;

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Assembles clientgate from `config`, binds `config.server.listen` and serves until
/// `shutdown` resolves; then lets in-flight calls finish and flushes the store.
/// `on_listening` receives the bound address (useful with port 0). Returns what the store
/// recorded while serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<StoreStats, ServeError> {
    let app = App::open(config)?;
    let listener = bind(app.config.server.listen).await?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: app.config.server.listen,
        source,
    })?;
    let policies = app.engine.policies();
    info!(
        %addr,
        policy_version = %policies.version,
        policies = policies.policy_count(),
        profile = app.config.validation.profile.as_str(),
        data = %app.config.store.dir.display(),
        "clientgate listening"
    );
    let background = spawn_background(&app);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RegistrationServiceServer<RegistrationApi>>()
        .await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<StepUpServiceServer<StepUpApi>>().await;
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
    let reflection_gate = app
        .config
        .auth
        .reflection_requires_auth
        .then(|| Gate::new(app.credentials.clone()));
    let routes = with_reflection(apis(&app).add_service(health_service), reflection_gate)?;
    let serving = Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stopping);
    let grace = app.config.server.shutdown_grace;
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
    for task in background {
        task.abort();
    }
    app.store.flush().await?;
    let stats = app.store.stats();
    info!(
        decisions_recorded = stats.decisions_recorded,
        flushes = stats.flushes,
        "store flushed; stopped"
    );
    Ok(stats)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })
}

/// The decision, admin and step-up services over the assembled engine.
fn apis(app: &App) -> Routes {
    let max_message = app.config.server.max_metadata_bytes + MESSAGE_OVERHEAD_BYTES;
    let gate = Gate::new(app.credentials.clone());
    let registration = RegistrationServiceServer::new(RegistrationApi::new(
        app.engine.clone(),
        app.config.server.max_metadata_bytes,
        gate.clone(),
    ))
    .max_decoding_message_size(max_message);
    let admin = AdminServiceServer::new(AdminApi::new(
        app.engine.clone(),
        app.config.validation.profile,
        app.reloader.clone(),
        gate.clone(),
    ));
    let step_ups = StepUpServiceServer::new(StepUpApi::new(app.engine.clone(), gate));
    Routes::new(registration)
        .add_service(admin)
        .add_service(step_ups)
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
