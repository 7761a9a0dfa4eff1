//! The database schema, as numbered migrations applied in order at start under an advisory
//! lock (so that replicas starting together apply each once), and refused when the database
//! was migrated by a newer clientgate.
//!
//! Every table keeps the record as the sled store does (JSON text, decoded the same way)
//! beside the columns queries filter and sort on. Identifiers are ULIDs compared byte for
//! byte (`COLLATE "C"`), so that they sort by time.

use tokio_postgres::Client;

use crate::store::StoreError;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// The advisory lock migrations run under (any constant: it names clientgate's lock).
const MIGRATION_LOCK: i64 = 0x636c_6965_6e74_6701;

const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE decisions (
    id text COLLATE "C" PRIMARY KEY,
    decided_at_ms bigint NOT NULL,
    tenant text NOT NULL,
    client_id text,
    ip text,
    fingerprint text NOT NULL,
    decision text NOT NULL,
    registration_type text NOT NULL,
    policy_version text NOT NULL,
    record text NOT NULL
);
CREATE INDEX decisions_by_tenant ON decisions (tenant, id);
CREATE INDEX decisions_by_client ON decisions (client_id, id);
CREATE INDEX decisions_by_ip ON decisions (ip, id);
CREATE INDEX decisions_by_fingerprint ON decisions (fingerprint, id);

CREATE TABLE tickets (
    id text COLLATE "C" PRIMARY KEY,
    tenant text NOT NULL,
    state text NOT NULL,
    expires_at_ms bigint NOT NULL,
    record text NOT NULL
);
CREATE INDEX tickets_pending ON tickets (expires_at_ms) WHERE state = 'pending';

CREATE TABLE rate_buckets (
    dimension text NOT NULL,
    value text NOT NULL,
    minute bigint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (dimension, value, minute)
);
CREATE INDEX rate_buckets_by_minute ON rate_buckets (minute);

CREATE TABLE fingerprints (
    fingerprint text PRIMARY KEY,
    approved bigint NOT NULL,
    first_seen_ms bigint NOT NULL,
    first_decision_id text NOT NULL
);

CREATE TABLE cimd_cache (
    client_id text PRIMARY KEY,
    expires_at_ms bigint NOT NULL,
    record text NOT NULL
);

CREATE TABLE approved_documents (
    tenant text NOT NULL,
    client_id text NOT NULL,
    snapshot bytea NOT NULL,
    PRIMARY KEY (tenant, client_id)
);

CREATE TABLE disagreements (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);

CREATE TABLE admin_actions (
    id text COLLATE "C" PRIMARY KEY,
    record text NOT NULL
);
"#,
)];

/// Brings the database to [`SCHEMA_VERSION`]; returns the migrations applied. A database
/// at a newer version is refused: this build does not know what it holds.
pub async fn migrate(client: &mut Client, url_for_errors: &str) -> Result<Vec<i32>, StoreError> {
    let io = |error: tokio_postgres::Error| StoreError::Io(super::connection::describe(&error));
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(io)?;
    let applied = apply(client, url_for_errors).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(io);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut Client, url_for_errors: &str) -> Result<Vec<i32>, StoreError> {
    let io = |error: tokio_postgres::Error| StoreError::Io(super::connection::describe(&error));
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS clientgate_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(io)?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM clientgate_schema",
            &[],
        )
        .await
        .map_err(io)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            database: url_for_errors.to_owned(),
            found: current,
            expected: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
        let transaction = client.transaction().await.map_err(io)?;
        transaction.batch_execute(sql).await.map_err(io)?;
        transaction
            .execute(
                "INSERT INTO clientgate_schema (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(io)?;
        transaction.commit().await.map_err(io)?;
        applied.push(*version);
    }
    Ok(applied)
}
