//! What happened, for whoever watches: the metrics, the webhooks (`notify`) and the
//! decision export (`export`). The engine, the step-up resolution and the policy reloader
//! publish; a sink must return at once (it queues, it never does I/O on the caller's
//! path), so publishing never delays an answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::metrics::Metrics;
use crate::step_up::StepUpTicket;
use crate::store::DecisionRecord;

/// One thing that happened.
#[derive(Clone, Debug)]
pub enum Event {
    /// A decision was answered and recorded (`kept`), or answered and shed by a store over
    /// its size budget.
    Decided {
        record: Arc<DecisionRecord>,
        kept: bool,
        /// How the CIMD document was had (`CacheStatus`), or the finding code of the
        /// failed fetch; `None` for DCR.
        cimd_outcome: Option<&'static str>,
    },
    /// A decision opened a ticket for an operator to review.
    StepUpOpened(Arc<StepUpTicket>),
    /// An operator approved or denied a ticket.
    StepUpResolved(Arc<StepUpTicket>),
    /// A policy reload was refused; the set in force stays.
    PolicyReloadFailed {
        dir: String,
        version_in_force: String,
        errors: Vec<String>,
    },
    /// A new policy set was put in force.
    PolicyReloaded { version: String },
}

impl Event {
    /// The name a webhook subscribes to, for the events webhooks carry.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Decided { .. } => "decision.recorded",
            Event::StepUpOpened(_) => "step_up.opened",
            Event::StepUpResolved(_) => "step_up.resolved",
            Event::PolicyReloadFailed { .. } => "policy.reload_failed",
            Event::PolicyReloaded { .. } => "policy.reloaded",
        }
    }
}

/// The events a webhook can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 3] =
    ["step_up.opened", "step_up.resolved", "policy.reload_failed"];

/// Whoever watches. `publish` must not block.
pub trait Sink: Send + Sync {
    fn publish(&self, event: &Event);
}

/// The sinks of one process, cheap to clone.
#[derive(Clone)]
pub struct Events {
    metrics: Arc<Metrics>,
    sinks: Arc<Vec<Arc<dyn Sink>>>,
}

impl Default for Events {
    fn default() -> Events {
        Events::new(Arc::new(Metrics::default()), Vec::new())
    }
}

impl Events {
    pub fn new(metrics: Arc<Metrics>, sinks: Vec<Arc<dyn Sink>>) -> Events {
        Events {
            metrics,
            sinks: Arc::new(sinks),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn publish(&self, event: Event) {
        count(&self.metrics, &event);
        for sink in self.sinks.iter() {
            sink.publish(&event);
        }
    }

    /// Publishes a decision: counted from the record itself, and copied into an event only
    /// when a sink watches (the answer's path pays for no copy it does not need).
    pub fn decided(&self, record: &DecisionRecord, kept: bool, cimd_outcome: Option<&'static str>) {
        count_decision(&self.metrics, record, cimd_outcome);
        if self.sinks.is_empty() {
            return;
        }
        let event = Event::Decided {
            record: Arc::new(record.clone()),
            kept,
            cimd_outcome,
        };
        for sink in self.sinks.iter() {
            sink.publish(&event);
        }
    }
}

fn count_decision(metrics: &Metrics, record: &DecisionRecord, cimd_outcome: Option<&'static str>) {
    metrics.decisions.add(
        (
            record.decision.as_str(),
            record.registration_type.as_str(),
            metrics.tenant_label(&record.tenant),
        ),
        1,
    );
    metrics.decision_latency.observe(record.latency_micros);
    if record
        .findings
        .iter()
        .any(|finding| finding.code == crate::registration::Code::PolicyEvaluationError)
    {
        metrics.policy_errors.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(outcome) = cimd_outcome {
        metrics.cimd.add(outcome, 1);
    }
}

/// What the metrics count of `event`.
fn count(metrics: &Metrics, event: &Event) {
    match event {
        Event::Decided {
            record,
            cimd_outcome,
            ..
        } => count_decision(metrics, record, *cimd_outcome),
        Event::StepUpOpened(_) => {
            metrics.step_ups_opened.fetch_add(1, Ordering::Relaxed);
        }
        Event::StepUpResolved(ticket) => metrics.step_ups_resolved.add(ticket.state.as_str(), 1),
        Event::PolicyReloadFailed { .. } => metrics.reloads.add("refused", 1),
        Event::PolicyReloaded { .. } => metrics.reloads.add("loaded", 1),
    }
}
