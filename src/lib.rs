//! clientgate decides OAuth client registrations for MCP authorization servers.
//!
//! An authorization server calls `Evaluate` for every Dynamic Client Registration (RFC 7591)
//! and every Client ID Metadata Document client it meets; clientgate validates the
//! registration, derives signals, evaluates the operator's Cedar policies, records the
//! decision durably and answers approve, deny or step up, with reasons.
//!
//! # Layout
//!
//! The data flows one way: request → validate → signals → decide → record → response. The
//! modules are listed from the bottom up; each imports only modules listed before it or in
//! its own layer (`tests/layering.rs` holds the layers and checks the imports).
//!
//! - [`vocab`]: the words every layer shares: decisions, reasons, registration types, the
//!   caller, the clock's unit. [`address`], beside it: the special-use address set and the
//!   rules that refuse an address (pure), which validation and the fetcher both apply;
//!   [`metrics`]: what clientgate counts and its Prometheus exposition.
//! - [`registration`]: pure validation of registration metadata into normalized metadata
//!   and typed findings; the profile table of disputed rules.
//! - [`auth`]: who is calling (bearer tokens by their SHA-256) and the role each call
//!   needs; pure.
//! - [`signals`]: pure derivation of the facts policies see (hosts, registrable domains,
//!   redirect kinds, caller IP, time, warnings).
//! - [`fingerprint`]: the stable hash equal registrations share.
//! - [`known_clients`]: the registry of known MCP clients (`policies/known-clients.toml`):
//!   who publishes each and how it registers; recognizing a registration, or the name it
//!   borrows; pure.
//! - [`step_up`]: the step-up ticket, its state machine, opening, redeeming and resolving
//!   it, and how long it is kept; pure.
//! - [`store`] and [`errors`] (one layer): the durable decision log, step-up tickets, rate
//!   counters, the CIMD cache, shadow disagreements and the admin audit trail (sled, group
//!   commit, compaction into fresh generations); the one mapping of outcomes and failures
//!   to OAuth error codes and gRPC statuses.
//! - [`policy`] and [`cimd`]: loading the Cedar policy directory, building entities and
//!   context, the outcome rules (approve, deny, step up, fail closed); Client ID Metadata
//!   Documents: the client_id rules, the SSRF-guarded fetcher, document validation, the
//!   cache. Beside them [`events`] (what happened, and the sinks that watch), [`notify`]
//!   (signed webhooks from bounded queues) and [`export`] (a JSON line per decision).
//! - [`engine`]: the pipeline: pure preparation and decision, and `Engine::evaluate`, which
//!   does a decision's I/O (CIMD resolution, store reads, the durable record).
//! - [`authoring`]: the policy author's tools (`check`, `eval`, `test`, `bench`) as functions
//!   of their inputs; printing and files are the command line's.
//! - [`config`]: the typed settings, the file, environment and flag layers; the one place
//!   the defaults are assembled.
//! - [`app`]: clientgate assembled from a configuration: engine, policies, store,
//!   credentials, reload, maintenance.
//! - [`service`] and [`proto`]: the gRPC edge (Evaluate, AdminService, StepUpService,
//!   health, reflection, every RPC admitted by role), the admin HTTP surface (the
//!   approvals console, `/metrics`, `/healthz`, `/readyz`) and the server's life; the
//!   generated `clientgate.v1` types.
//! - [`cli`]: the command line, one file per command (`clientgate admin` is the operator's
//!   client of the admin API).

#![forbid(unsafe_code)]

pub mod address;
pub mod app;
pub mod auth;
pub mod authoring;
pub mod cimd;
pub mod cli;
pub mod config;
pub mod engine;
pub mod errors;
pub mod events;
pub mod export;
pub mod fingerprint;
pub mod known_clients;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proto;
pub mod registration;
pub mod service;
pub mod signals;
pub mod step_up;
pub mod store;
pub mod vocab;
