//! clientgate never gives a decision it could not record: a failing store turns an
//! APPROVE into UNAVAILABLE.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clientgate::app::{build_engine, engine_settings};
use clientgate::config::Config;
use clientgate::engine::{EvaluateInput, Registration};
use clientgate::policy::load_policy_dir;
use clientgate::step_up::OperatorResolution;
use clientgate::step_up::StepUpTicket;
use clientgate::store::{AdminAction, AdminActionPage, CacheEntry};
use clientgate::store::{
    DecisionPage, DecisionQuery, DecisionRecord, Disagreement, DisagreementPage, FingerprintStats,
    PruneCutoffs, PruneReport, RateKey, Recorded, ResolveError, Store, StoreError, StoreFuture,
    StoreStats, TicketPage, TicketQuery,
};
use clientgate::vocab::Caller;
use clientgate::vocab::Decision;

/// A store whose disk is gone.
struct BrokenDisk;

impl Store for BrokenDisk {
    fn record(
        &self,
        _: DecisionRecord,
        _: Option<StepUpTicket>,
        _: Vec<RateKey>,
    ) -> StoreFuture<'_, Recorded> {
        Box::pin(async {
            Err(StoreError::Io(
                "flush failed: no space left on device".to_owned(),
            ))
        })
    }
    fn get_decision(&self, _: &str) -> Result<Option<DecisionRecord>, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn list_decisions(&self, _: &DecisionQuery) -> Result<DecisionPage, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    // Reads still work on a full disk; writes do not.
    fn rate_counts(
        &self,
        keys: &[RateKey],
        windows: &[Duration],
        _: u64,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        Ok(vec![vec![0; windows.len()]; keys.len()])
    }
    fn fingerprint_stats(&self, _: &str) -> Result<Option<FingerprintStats>, StoreError> {
        Ok(None)
    }
    fn get_ticket(&self, _: &str) -> Result<Option<StepUpTicket>, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn list_tickets(&self, _: &TicketQuery, _: u64) -> Result<TicketPage, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn resolve_ticket(
        &self,
        _: &str,
        _: OperatorResolution,
    ) -> StoreFuture<'_, Result<(StepUpTicket, bool), ResolveError>> {
        Box::pin(async { Err(StoreError::Io("write failed".to_owned())) })
    }
    fn expire_tickets(&self, _: u64) -> Result<usize, StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn prune(&self, _: PruneCutoffs) -> Result<PruneReport, StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn record_disagreement(&self, _: &Disagreement) -> Result<(), StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn list_disagreements(
        &self,
        _: usize,
        _: Option<ulid::Ulid>,
    ) -> Result<DisagreementPage, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn record_admin_action(&self, _: AdminAction) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Io("write failed".to_owned())) })
    }
    fn list_admin_actions(
        &self,
        _: usize,
        _: Option<ulid::Ulid>,
    ) -> Result<AdminActionPage, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn cached_document(&self, _: &str) -> Result<Option<CacheEntry>, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn cache_document(&self, _: &CacheEntry) -> Result<(), StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn evict_document(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn approved_document(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Io("read failed".to_owned()))
    }
    fn set_approved_document(&self, _: &str, _: &str, _: &[u8]) -> Result<(), StoreError> {
        Err(StoreError::Io("write failed".to_owned()))
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Io("flush failed".to_owned())) })
    }
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

fn approvable(dry_run: bool) -> EvaluateInput {
    EvaluateInput {
        tenant: "default".to_owned(),
        registration: Registration::Dcr {
            metadata_json: r#"{"redirect_uris":["https://app.example.com/cb"]}"#.to_owned(),
            initial_access_token: false,
        },
        caller: Caller::default(),
        step_up_ticket: String::new(),
        completed_challenges: Vec::new(),
        dry_run,
        explain: false,
    }
}

#[tokio::test]
async fn a_decision_that_cannot_be_recorded_is_unavailable_not_approved() {
    let policies =
        load_policy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let config = Config::default();
    let settings = engine_settings(&config).unwrap();
    let engine = build_engine(&config, settings, policies, Arc::new(BrokenDisk)).unwrap();

    let dry = engine
        .evaluate(approvable(true))
        .await
        .expect("a dry run records nothing");
    assert_eq!(
        dry.decision,
        Decision::Approve,
        "the registration itself is approvable"
    );

    let error = engine
        .evaluate(approvable(false))
        .await
        .expect_err("the store failed");
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("no space left on device"),
        "{}",
        status.message()
    );
}
