//! Group commit on PostgreSQL: one writer task takes every write waiting (decisions with
//! their tickets and counters, resolutions, admin actions) and commits them in one
//! transaction, so concurrent decisions share a commit as they share a flush on sled.
//!
//! Within the transaction the tickets it touches are locked first, in id order
//! (`SELECT … FOR UPDATE`): two replicas redeeming or resolving one ticket take turns, and
//! the second sees what the first wrote. Counter upserts go in key order, so that two
//! replicas' batches never wait on each other in a cycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Transaction;
use tokio::sync::{mpsc, oneshot};

use super::connection::db_error;
use super::reads::prepared;
use super::{Shared, decode, encode, pg_i64};
use crate::step_up::{self, OperatorResolution, StepUpTicket};
use crate::store::derived::MINUTE_MS;
use crate::store::{AdminAction, DecisionRecord, RateKey, Recorded, ResolveError, StoreError};
use crate::vocab::Decision;

/// Writes one batch holds at most.
const MAX_BATCH: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write waiting for the next commit.
pub(super) enum Job {
    Record {
        decision: Box<DecisionRecord>,
        ticket: Option<Box<StepUpTicket>>,
        rate_keys: Vec<RateKey>,
        reply: Reply<Recorded>,
    },
    Resolve {
        ticket_id: String,
        resolution: OperatorResolution,
        reply: Reply<Result<(StepUpTicket, bool), ResolveError>>,
    },
    Admin {
        action: AdminAction,
        reply: Reply<()>,
    },
    /// Answered once every write sent before it is committed.
    Barrier { reply: Reply<()> },
}

/// Commits batches until every sender is gone.
pub(super) async fn run(shared: Arc<Shared>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len() as u64;
        commit(&shared, batch).await;
        shared
            .commit_micros
            .observe(started.elapsed().as_micros() as u64);
        shared.commit_batch.observe(size);
    }
}

/// What one job comes to once its tickets are known.
enum Outcome {
    Recorded(Reply<Recorded>),
    Resolved(
        Reply<Result<(StepUpTicket, bool), ResolveError>>,
        Box<Result<(StepUpTicket, bool), ResolveError>>,
    ),
    Spent(Reply<Recorded>, String),
    Done(Reply<()>),
}

/// The rows one batch writes.
#[derive(Default)]
struct Rows {
    decisions: Vec<DecisionRecord>,
    /// Written in id order.
    tickets: BTreeMap<String, StepUpTicket>,
    /// `(dimension, value, minute)` → registrations, in key order.
    rates: BTreeMap<(&'static str, String, i64), i64>,
    /// Fingerprint → (approvals, first seen, first decision).
    fingerprints: BTreeMap<String, (i64, i64, String)>,
    actions: Vec<AdminAction>,
    /// Rate counts of this batch, to take off the replica's uncommitted counts afterwards.
    counted: Vec<(RateKey, u64)>,
}

async fn commit(shared: &Shared, batch: Vec<Job>) {
    let (rows, outcomes) = match transact(shared, batch).await {
        Ok(done) => done,
        Err((error, outcomes, counted)) => {
            shared.uncount(&counted);
            shared.set_serving(false);
            tracing::warn!(%error, "a commit to the database failed");
            for outcome in outcomes {
                fail(outcome, &error);
            }
            return;
        }
    };
    shared.uncount(&rows.counted);
    shared.set_serving(true);
    shared.recorded.fetch_add(
        rows.decisions.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    shared
        .commits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for outcome in outcomes {
        match outcome {
            Outcome::Recorded(reply) => drop(reply.send(Ok(Recorded::Kept))),
            Outcome::Resolved(reply, result) => drop(reply.send(Ok(*result))),
            Outcome::Spent(reply, ticket_id) => {
                drop(reply.send(Err(StoreError::TicketSpent { ticket_id })))
            }
            Outcome::Done(reply) => drop(reply.send(Ok(()))),
        }
    }
}

fn fail(outcome: Outcome, error: &StoreError) {
    match outcome {
        Outcome::Recorded(reply) | Outcome::Spent(reply, _) => drop(reply.send(Err(error.clone()))),
        Outcome::Resolved(reply, _) => drop(reply.send(Err(error.clone()))),
        Outcome::Done(reply) => drop(reply.send(Err(error.clone()))),
    }
}

type Failed = (StoreError, Vec<Outcome>, Vec<(RateKey, u64)>);

/// Runs one batch's transaction. On failure nothing of it is written, and every job gets
/// the error.
async fn transact(shared: &Shared, batch: Vec<Job>) -> Result<(Rows, Vec<Outcome>), Failed> {
    let mut counted = Vec::new();
    for job in &batch {
        if let Job::Record {
            decision,
            rate_keys,
            ..
        } = job
        {
            let minute = decision.decided_at_ms / MINUTE_MS;
            counted.extend(rate_keys.iter().map(|key| (key.clone(), minute)));
        }
    }
    let mut client = match shared.pool.get().await {
        Ok(client) => client,
        Err(error) => {
            let error = StoreError::Io(format!("cannot reach the database: {error}"));
            return Err((error, outcomes_on_failure(batch), counted));
        }
    };
    let transaction = match client.transaction().await {
        Ok(transaction) => transaction,
        Err(error) => return Err((db_error(&error), outcomes_on_failure(batch), counted)),
    };
    let mut tickets = match lock_tickets(&transaction, &batch).await {
        Ok(tickets) => tickets,
        Err(error) => return Err((error, outcomes_on_failure(batch), counted)),
    };
    let mut rows = Rows {
        counted,
        ..Rows::default()
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(apply(job, &mut tickets, &mut rows));
    }
    match write(&transaction, &rows).await {
        Ok(()) => {}
        Err(error) => {
            let counted = std::mem::take(&mut rows.counted);
            return Err((error, outcomes, counted));
        }
    }
    if let Err(error) = transaction.commit().await {
        let counted = std::mem::take(&mut rows.counted);
        return Err((db_error(&error), outcomes, counted));
    }
    Ok((rows, outcomes))
}

fn outcomes_on_failure(batch: Vec<Job>) -> Vec<Outcome> {
    batch
        .into_iter()
        .map(|job| match job {
            Job::Record { reply, .. } => Outcome::Recorded(reply),
            Job::Resolve {
                reply, ticket_id, ..
            } => Outcome::Resolved(reply, Box::new(Err(ResolveError::NotFound(ticket_id)))),
            Job::Admin { reply, .. } | Job::Barrier { reply } => Outcome::Done(reply),
        })
        .collect()
}

/// Locks, in id order, the tickets the batch redeems or resolves, and reads them.
async fn lock_tickets(
    transaction: &Transaction<'_>,
    batch: &[Job],
) -> Result<HashMap<String, StepUpTicket>, StoreError> {
    let mut ids: Vec<&str> = batch
        .iter()
        .filter_map(|job| match job {
            Job::Record { decision, .. } => decision.redeemed_ticket.as_deref(),
            Job::Resolve { ticket_id, .. } => Some(ticket_id.as_str()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    let statement = prepared(
        transaction,
        "SELECT id, record FROM tickets WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .await?;
    let rows = transaction
        .query(&statement, &[&ids])
        .await
        .map_err(|error| db_error(&error))?;
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let ticket: StepUpTicket = decode(&id, row.get::<_, &str>(1))?;
            Ok((id, ticket))
        })
        .collect()
}

/// Applies one job to the batch: its rows, and what its caller is told once committed.
fn apply(job: Job, tickets: &mut HashMap<String, StepUpTicket>, rows: &mut Rows) -> Outcome {
    match job {
        Job::Record {
            decision,
            ticket,
            rate_keys,
            reply,
        } => {
            if let Some(ticket_id) = &decision.redeemed_ticket {
                let redeemed = tickets.get(ticket_id).and_then(|ticket| {
                    ticket.redeemed(&decision.decision_id, decision.decided_at_ms)
                });
                let Some(redeemed) = redeemed else {
                    return Outcome::Spent(reply, ticket_id.clone());
                };
                tickets.insert(ticket_id.clone(), redeemed.clone());
                rows.tickets.insert(ticket_id.clone(), redeemed);
            }
            if let Some(ticket) = ticket {
                rows.tickets.insert(ticket.ticket_id.clone(), *ticket);
            }
            let minute = pg_i64(decision.decided_at_ms / MINUTE_MS);
            for key in rate_keys {
                *rows
                    .rates
                    .entry((key.dimension.as_str(), key.value, minute))
                    .or_default() += 1;
            }
            if decision.decision == Decision::Approve {
                let entry = rows
                    .fingerprints
                    .entry(decision.fingerprint.clone())
                    .or_insert_with(|| {
                        (
                            0,
                            pg_i64(decision.decided_at_ms),
                            decision.decision_id.clone(),
                        )
                    });
                entry.0 += 1;
            }
            rows.decisions.push(*decision);
            Outcome::Recorded(reply)
        }
        Job::Resolve {
            ticket_id,
            resolution,
            reply,
        } => {
            let Some(ticket) = tickets.get(&ticket_id) else {
                return Outcome::Resolved(reply, Box::new(Err(ResolveError::NotFound(ticket_id))));
            };
            let result = match step_up::resolve(ticket.clone(), &resolution) {
                Ok((ticket, changed)) => {
                    if changed {
                        tickets.insert(ticket_id.clone(), ticket.clone());
                        rows.tickets.insert(ticket_id, ticket.clone());
                    }
                    Ok((ticket, changed))
                }
                Err(refusal) => Err(ResolveError::Refused(refusal)),
            };
            Outcome::Resolved(reply, Box::new(result))
        }
        Job::Admin { action, reply } => {
            rows.actions.push(action);
            Outcome::Done(reply)
        }
        Job::Barrier { reply } => Outcome::Done(reply),
    }
}

/// Writes the batch's rows: one statement per table.
async fn write(transaction: &Transaction<'_>, rows: &Rows) -> Result<(), StoreError> {
    let io = |error: tokio_postgres::Error| db_error(&error);
    if !rows.decisions.is_empty() {
        let mut columns = DecisionColumns::default();
        for decision in &rows.decisions {
            columns.push(decision)?;
        }
        let statement = prepared(
            transaction,
            "INSERT INTO decisions (id, decided_at_ms, tenant, client_id, ip, fingerprint, \
                 decision, registration_type, policy_version, record) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])",
        )
        .await?;
        transaction
            .execute(
                &statement,
                &[
                    &columns.id,
                    &columns.decided_at_ms,
                    &columns.tenant,
                    &columns.client_id,
                    &columns.ip,
                    &columns.fingerprint,
                    &columns.decision,
                    &columns.registration_type,
                    &columns.policy_version,
                    &columns.record,
                ],
            )
            .await
            .map_err(io)?;
    }
    if !rows.tickets.is_empty() {
        let mut ids = Vec::new();
        let mut tenants = Vec::new();
        let mut states = Vec::new();
        let mut expires = Vec::new();
        let mut records = Vec::new();
        for (id, ticket) in &rows.tickets {
            ids.push(id.as_str());
            tenants.push(ticket.tenant.as_str());
            states.push(ticket.state.as_str());
            expires.push(pg_i64(ticket.expires_at_ms));
            records.push(encode("step-up ticket", ticket)?);
        }
        let statement = prepared(transaction, "INSERT INTO tickets (id, tenant, state, expires_at_ms, record) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                 expires_at_ms = excluded.expires_at_ms, record = excluded.record").await?;
        transaction
            .execute(&statement, &[&ids, &tenants, &states, &expires, &records])
            .await
            .map_err(io)?;
    }
    if !rows.rates.is_empty() {
        let mut dimensions = Vec::new();
        let mut values = Vec::new();
        let mut minutes = Vec::new();
        let mut counts = Vec::new();
        for ((dimension, value, minute), count) in &rows.rates {
            dimensions.push(*dimension);
            values.push(value.as_str());
            minutes.push(*minute);
            counts.push(*count);
        }
        let statement = prepared(
            transaction,
            "INSERT INTO rate_buckets (dimension, value, minute, count) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
                 ON CONFLICT (dimension, value, minute) \
                 DO UPDATE SET count = rate_buckets.count + excluded.count",
        )
        .await?;
        transaction
            .execute(&statement, &[&dimensions, &values, &minutes, &counts])
            .await
            .map_err(io)?;
    }
    if !rows.fingerprints.is_empty() {
        let mut prints = Vec::new();
        let mut approved = Vec::new();
        let mut first_seen = Vec::new();
        let mut first_decision = Vec::new();
        for (print, (count, seen, decision)) in &rows.fingerprints {
            prints.push(print.as_str());
            approved.push(*count);
            first_seen.push(*seen);
            first_decision.push(decision.as_str());
        }
        let statement = prepared(
            transaction,
            "INSERT INTO fingerprints (fingerprint, approved, first_seen_ms, first_decision_id) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) \
                 ON CONFLICT (fingerprint) \
                 DO UPDATE SET approved = fingerprints.approved + excluded.approved",
        )
        .await?;
        transaction
            .execute(
                &statement,
                &[&prints, &approved, &first_seen, &first_decision],
            )
            .await
            .map_err(io)?;
    }
    if !rows.actions.is_empty() {
        let mut ids = Vec::new();
        let mut records = Vec::new();
        for action in &rows.actions {
            ids.push(action.action_id.as_str());
            records.push(encode("admin action", action)?);
        }
        let statement = prepared(
            transaction,
            "INSERT INTO admin_actions (id, record) \
                 SELECT * FROM unnest($1::text[], $2::text[])",
        )
        .await?;
        transaction
            .execute(&statement, &[&ids, &records])
            .await
            .map_err(io)?;
    }
    Ok(())
}

/// A batch of decisions as one array per column.
#[derive(Default)]
struct DecisionColumns<'a> {
    id: Vec<&'a str>,
    decided_at_ms: Vec<i64>,
    tenant: Vec<&'a str>,
    client_id: Vec<Option<&'a str>>,
    ip: Vec<Option<&'a str>>,
    fingerprint: Vec<&'a str>,
    decision: Vec<&'static str>,
    registration_type: Vec<&'static str>,
    policy_version: Vec<&'a str>,
    record: Vec<String>,
}

impl<'a> DecisionColumns<'a> {
    fn push(&mut self, decision: &'a DecisionRecord) -> Result<(), StoreError> {
        self.id.push(&decision.decision_id);
        self.decided_at_ms.push(pg_i64(decision.decided_at_ms));
        self.tenant.push(&decision.tenant);
        self.client_id.push(decision.client_id.as_deref());
        self.ip.push(decision.ip.as_deref());
        self.fingerprint.push(&decision.fingerprint);
        self.decision.push(decision.decision.as_str());
        self.registration_type
            .push(decision.registration_type.as_str());
        self.policy_version.push(&decision.policy_version);
        self.record.push(encode("decision", decision)?);
        Ok(())
    }
}
