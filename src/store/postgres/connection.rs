//! Reaching the database: the connection pool (TLS with rustls when a CA is configured),
//! errors that name the database and their cause, and the probe that health follows.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::{PostgresSettings, Shared};
use crate::store::StoreError;

/// How often a replica checks that the database answers (health).
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub(super) fn pool(settings: &PostgresSettings) -> Result<Pool, StoreError> {
    let named = describe_target(&settings.url);
    let open_error = |message: String| StoreError::Open {
        path: named.clone(),
        message,
    };
    let mut config = tokio_postgres::Config::from_str(&settings.url)
        .map_err(|error| open_error(format!("not a PostgreSQL connection string: {error}")))?;
    let timeout_ms = settings.statement_timeout.as_millis();
    config.options(format!("-c statement_timeout={timeout_ms}"));
    config.connect_timeout(settings.statement_timeout);
    config.application_name("clientgate");
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &settings.ca_file {
        Some(ca_file) => {
            // With a CA, TLS is required: a server (or a man in the middle) that declines
            // it is refused rather than spoken to in the clear.
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls_connector(ca_file).map_err(open_error)?;
            Manager::from_config(config, tls, manager_config)
        }
        None => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(settings.statement_timeout))
        .create_timeout(Some(settings.statement_timeout))
        .recycle_timeout(Some(settings.statement_timeout))
        .build()
        .map_err(|error| open_error(error.to_string()))
}

/// TLS to the database with rustls: the server's certificate must chain to `ca_file`.
fn tls_connector(
    ca_file: &std::path::Path,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca_file)
        .map_err(|error| format!("cannot read `{}`: {error}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate =
            certificate.map_err(|error| format!("`{}` is not PEM: {error}", ca_file.display()))?;
        roots
            .add(certificate)
            .map_err(|error| format!("`{}`: {error}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("`{}` holds no certificate", ca_file.display()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The database named without its password, for messages.
pub(super) fn describe_target(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "postgres database `{}` on {}",
                config.get_dbname().unwrap_or("(default)"),
                if hosts.is_empty() {
                    "localhost".to_owned()
                } else {
                    hosts.join(",")
                }
            )
        }
        Err(_) => "the configured postgres database".to_owned(),
    }
}

/// Says what went wrong, with the server's message when it sent one.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("database: {} ({})", db.message(), db.code().code()),
        None => format!("database: {}", chain(error)),
    }
}

pub(super) fn db_error(error: &tokio_postgres::Error) -> StoreError {
    StoreError::Io(describe(error))
}

pub(super) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Io(format!("cannot reach the database: {}", chain(&error)))
}

/// An error and its sources, joined: a TLS failure names the certificate problem.
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Checks every [`PROBE_EVERY`] that the database answers, for health, until the store is
/// dropped.
pub(super) async fn probe(shared: Weak<Shared>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let answered = match shared.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        if !answered && *shared.serving.borrow() {
            tracing::warn!("the database does not answer: decisions are UNAVAILABLE until it does");
        }
        if answered && !*shared.serving.borrow() {
            tracing::info!("the database answers again");
        }
        shared.set_serving(answered);
    }
}
