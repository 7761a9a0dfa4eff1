//! `clientgate serve`: load the configuration, set up logs, and serve until SIGINT or
//! SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::app::AppError;
use crate::config::{Config, LoadedConfig, LogFormat, Overrides};
use crate::service::ServeError;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The address to serve on, e.g. 127.0.0.1:50051 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve AdminService and StepUpService on this address instead (`server.admin_listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// The policy directory: schema.cedarschema, *.cedar, entities.json.
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The data directory of the decision store.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A candidate policy directory evaluated beside the live one; disagreements are
    /// recorded (AdminService.ListShadowDisagreements).
    #[arg(long, value_name = "DIR")]
    shadow_policies: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen,
        admin_listen: args.admin_listen,
        policies: args.policies,
        data: args.data,
        shadow_policies: args.shadow_policies,
    };
    let LoadedConfig { config, warnings } =
        match Config::load(args.config.as_deref(), std::env::vars(), &overrides) {
            Ok(loaded) => loaded,
            Err(errors) => {
                eprint!("clientgate: {errors}");
                return ExitCode::from(2);
            }
        };
    if let Err(error) = init_logging(&config) {
        eprintln!("clientgate: invalid configuration: `log.level`: {error}");
        return ExitCode::from(2);
    }
    // From here on every message is a log line, so that JSON logs stay JSON lines.
    for warning in &warnings {
        tracing::warn!(variable = %warning.key, "{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(unix)]
    survive_file_size_limit(&runtime);
    match runtime.block_on(crate::service::run(config, shutdown_signal(), |_| {})) {
        Ok(_stats) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "clientgate stopped");
            // Serving insecurely is a matter of configuration, like any other bad setting.
            match error {
                ServeError::App(
                    AppError::Insecure { .. }
                    | AppError::TrustedIssuers(_)
                    | AppError::TokenFile { .. },
                ) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Logs to standard error at `log.level` (already checked when the configuration loaded),
/// as text or JSON lines.
fn init_logging(config: &Config) -> Result<(), tracing_subscriber::filter::ParseError> {
    let filter = EnvFilter::try_new(&config.log.level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// A write past the process's file-size limit (`RLIMIT_FSIZE`) raises SIGXFSZ, whose default
/// action ends the process: with a handler the write fails with `EFBIG` instead, which the
/// store treats as a full disk (out of service until it can write again), and clientgate
/// keeps answering — `UNAVAILABLE` — rather than dying.
#[cfg(unix)]
fn survive_file_size_limit(runtime: &tokio::runtime::Runtime) {
    /// SIGXFSZ on Linux and the BSDs.
    const SIGXFSZ: i32 = 25;
    let _entered = runtime.enter();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ)) {
        Ok(mut limit_reached) => {
            runtime.spawn(async move {
                while limit_reached.recv().await.is_some() {
                    tracing::warn!("a write reached the process's file-size limit (SIGXFSZ)");
                }
            });
        }
        Err(error) => tracing::warn!(%error, "cannot handle SIGXFSZ"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
