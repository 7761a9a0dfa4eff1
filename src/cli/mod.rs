//! The `clientgate` command line: one file per command (`serve`, `check`, `eval`, `test`,
//! `bench`, `token`), as thin edges (files, network, printing) around the library; `policies.rs`
//! holds what the policy author's commands share.
//!
//! `admin` exits 1 when the server refused, 3 when it is unreachable, 4 when the caller is
//! not authenticated or allowed; `healthcheck` exits 1 when not ready.
//!
//! Exit statuses: 0 done (or stopped cleanly; for `eval`, APPROVE), 1 failed (invalid
//! policies, failing tests, a server that stopped badly), 2 bad usage or configuration;
//! `eval` exits 3 on DENY and 4 on STEP_UP.

mod admin;
mod bench;
mod check;
mod eval;
mod healthcheck;
mod migrate;
mod policies;
mod registry;
mod serve;
mod test;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "clientgate",
    version,
    about = "Registration decisions for OAuth authorization servers that serve MCP clients"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (defaults: 127.0.0.1:50051, ./policies, ./data).
    Serve(serve::ServeArgs),
    /// Validate a policy directory: schema, policies, entities and annotations.
    Check(check::CheckArgs),
    /// Decide one registration offline, with no server and no store.
    Eval(eval::EvalArgs),
    /// Run the policy test suites in <policies>/tests/*.toml.
    Test(test::TestArgs),
    /// Measure what one decision costs with these policies (no store, no network).
    Bench(bench::BenchArgs),
    /// Make a bearer token for a caller (its `[[auth.tokens]]` table, never the token).
    Token(token::TokenArgs),
    /// The known-clients registry of the policy directory: `list`, `show ID`.
    Registry(registry::RegistryArgs),
    /// The operator's command line over the admin API: pending, show, approve, deny,
    /// decisions, status, audit.
    Admin(admin::AdminArgs),
    /// Apply the PostgreSQL store's schema migrations and exit.
    Migrate(migrate::MigrateArgs),
    /// Exit 0 when the server answers ready on `/readyz` (for container probes).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => check::check(args),
        Command::Eval(args) => eval::eval(args),
        Command::Test(args) => test::test(args),
        Command::Bench(args) => bench::bench(args),
        Command::Token(args) => token::token(args),
        Command::Registry(args) => registry::registry(args),
        Command::Admin(args) => admin::admin(args),
        Command::Healthcheck(args) => healthcheck::healthcheck(args),
        Command::Migrate(args) => migrate::migrate(args),
    }
}
