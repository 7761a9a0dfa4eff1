//! `clientgate migrate`: applies the PostgreSQL store's schema migrations and exits, so that
//! a rollout can migrate once before the replicas start (they also migrate at start, under
//! the same lock).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{Config, LoadedConfig, Overrides, StoreBackend};
use crate::store::{PgStore, SCHEMA_VERSION};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// A TOML configuration file (`[store] backend = "postgres"`, `postgres_url`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn migrate(args: MigrateArgs) -> ExitCode {
    let LoadedConfig { config, .. } = match Config::load(
        args.config.as_deref(),
        std::env::vars(),
        &Overrides::default(),
    ) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("clientgate: {errors}");
            return ExitCode::from(2);
        }
    };
    if config.store.backend != StoreBackend::Postgres {
        eprintln!(
            "clientgate migrate: the store is sled (`store.backend`), which needs no migration; \
             set `store.backend = \"postgres\"` and `store.postgres_url`"
        );
        return ExitCode::from(2);
    }
    match PgStore::migrate(&config.store.postgres) {
        Ok(applied) if applied.is_empty() => {
            println!("the database is at schema version {SCHEMA_VERSION}; nothing to apply");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            println!(
                "applied migrations {applied:?}; the database is at schema version {SCHEMA_VERSION}"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("clientgate migrate: {error}");
            ExitCode::FAILURE
        }
    }
}
