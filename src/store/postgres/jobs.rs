//! The background jobs, ticket expiry and retention, each under a transaction-scoped
//! advisory lock: one replica at a time runs each; the others skip the pass.

use std::sync::Arc;

use ulid::Ulid;

use super::connection::{db_error, pool_error};
use super::reads::decoded;
use super::{Shared, encode, pg_i64};
use crate::step_up::{self, StepUpTicket};
use crate::store::derived::MINUTE_MS;
use crate::store::{PruneCutoffs, PruneReport, StoreError};

/// The advisory locks of the background jobs: one replica at a time runs each; a replica
/// that finds one taken skips its pass (another replica is doing it).
pub const EXPIRY_LOCK: i64 = 0x636c_6965_6e74_6702;
pub const PRUNE_LOCK: i64 = 0x636c_6965_6e74_6703;

/// Takes a transaction-scoped advisory lock if no other replica holds it.
async fn try_lock(
    transaction: &tokio_postgres::Transaction<'_>,
    key: i64,
) -> Result<bool, StoreError> {
    let row = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
        .await
        .map_err(|error| db_error(&error))?;
    Ok(row.get(0))
}

/// Expires the pending tickets past their expiry, unless another replica is at it.
pub(super) async fn expire_tickets(shared: Arc<Shared>, now_ms: u64) -> Result<usize, StoreError> {
    let mut client = shared.pool.get().await.map_err(pool_error)?;
    let transaction = client.transaction().await.map_err(|e| db_error(&e))?;
    if !try_lock(&transaction, EXPIRY_LOCK).await? {
        return Ok(0);
    }
    let rows = transaction
        .query(
            "SELECT id, record FROM tickets WHERE state = 'pending' \
                 AND expires_at_ms <= $1 ORDER BY id FOR UPDATE",
            &[&pg_i64(now_ms)],
        )
        .await
        .map_err(|e| db_error(&e))?;
    let mut expired = 0;
    for (id, ticket, _) in decoded::<StepUpTicket>(&rows)? {
        let Some(ticket) = step_up::expire(&ticket, now_ms) else {
            continue;
        };
        transaction
            .execute(
                "UPDATE tickets SET state = $2, record = $3 WHERE id = $1",
                &[
                    &id,
                    &ticket.state.as_str(),
                    &encode("step-up ticket", &ticket)?,
                ],
            )
            .await
            .map_err(|e| db_error(&e))?;
        expired += 1;
    }
    transaction.commit().await.map_err(|e| db_error(&e))?;
    Ok(expired)
}

/// Deletes what retention lets go, unless another replica is at it.
pub(super) async fn prune(
    shared: Arc<Shared>,
    cutoffs: PruneCutoffs,
) -> Result<PruneReport, StoreError> {
    let mut client = shared.pool.get().await.map_err(pool_error)?;
    let transaction = client.transaction().await.map_err(|e| db_error(&e))?;
    let mut report = PruneReport::default();
    if !try_lock(&transaction, PRUNE_LOCK).await? {
        return Ok(report);
    }
    let io = |error: tokio_postgres::Error| db_error(&error);
    let cut = Ulid::from_parts(cutoffs.decisions_ms, 0).to_string();
    report.decisions = transaction
        .execute("DELETE FROM decisions WHERE id < $1", &[&cut])
        .await
        .map_err(io)?;
    transaction
        .execute("DELETE FROM disagreements WHERE id < $1", &[&cut])
        .await
        .map_err(io)?;
    transaction
        .execute("DELETE FROM admin_actions WHERE id < $1", &[&cut])
        .await
        .map_err(io)?;
    // Expired before the cutoff is necessary for a ticket to go; the retention
    // rule decides.
    let rows = transaction
        .query(
            "SELECT id, record FROM tickets WHERE expires_at_ms < $1 FOR UPDATE",
            &[&pg_i64(cutoffs.tickets_ms)],
        )
        .await
        .map_err(io)?;
    let stale: Vec<String> = decoded::<StepUpTicket>(&rows)?
        .into_iter()
        .filter(|(_, ticket, _)| !step_up::is_retained(ticket, cutoffs.tickets_ms))
        .map(|(id, _, _)| id)
        .collect();
    report.tickets = transaction
        .execute("DELETE FROM tickets WHERE id = ANY($1)", &[&stale])
        .await
        .map_err(io)?;
    report.rate_buckets = transaction
        .execute(
            "DELETE FROM rate_buckets WHERE minute < $1",
            &[&pg_i64(cutoffs.rates_ms / MINUTE_MS)],
        )
        .await
        .map_err(io)?;
    report.fingerprints = transaction
        .execute(
            "DELETE FROM fingerprints WHERE first_seen_ms < $1",
            &[&pg_i64(cutoffs.decisions_ms)],
        )
        .await
        .map_err(io)?;
    report.cached_documents = transaction
        .execute(
            "DELETE FROM cimd_cache WHERE expires_at_ms < $1",
            &[&pg_i64(cutoffs.cimd_cache_ms)],
        )
        .await
        .map_err(io)?;
    transaction.commit().await.map_err(io)?;
    Ok(report)
}
