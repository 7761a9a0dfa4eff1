//! `clientgate bench`: what one decision costs with a given policy set, measured on the
//! pure pipeline (validation, signals, Cedar) with no store and no network.

use std::time::{Duration, Instant, SystemTime};

use super::offline::{OfflineCase, StubError, decide_offline};
use crate::engine::EngineSettings;
use crate::policy::PolicyBundle;

/// Figures of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    pub decisions: usize,
    pub cases: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl BenchReport {
    pub fn per_second(&self) -> f64 {
        self.decisions as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn mean(&self) -> Duration {
        self.elapsed / self.decisions.max(1) as u32
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no registrations to decide")]
    NoCases,
    #[error(transparent)]
    Stub(#[from] StubError),
}

/// Decides `decisions` registrations, taking `cases` in turn, and times each.
pub fn run(
    policies: &PolicyBundle,
    settings: &EngineSettings,
    cases: &[OfflineCase],
    decisions: usize,
) -> Result<BenchReport, BenchError> {
    if cases.is_empty() {
        return Err(BenchError::NoCases);
    }
    let now = SystemTime::now();
    let mut times = Vec::with_capacity(decisions);
    let started = Instant::now();
    for case in cases.iter().cycle().take(decisions) {
        let one = Instant::now();
        decide_offline(policies, settings, case, now)?;
        times.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    times.sort();
    let at = |fraction: f64| {
        let index = ((times.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
        times.get(index).copied().unwrap_or_default()
    };
    Ok(BenchReport {
        decisions: times.len(),
        cases: cases.len(),
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}
