//! Group commit: callers that wrote to sled wait here for a flush that covers their write.
//! One flush serves every caller that arrived before it started, so under load the number
//! of flushes grows with time, not with the number of writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// A handle to the flusher task.
#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the flusher task for `db` on the current tokio runtime.
    pub fn start(db: sled::Db) -> GroupCommit {
        let (sender, receiver) = mpsc::unbounded_channel();
        let flushes = Arc::new(AtomicU64::new(0));
        tokio::spawn(run_flusher(db, receiver, flushes.clone()));
        GroupCommit {
            waiters: sender,
            flushes,
        }
    }

    /// Resolves once everything written before this call is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (sender, receiver) = oneshot::channel();
        self.waiters
            .send(sender)
            .map_err(|_| StoreError::Io("the flusher has stopped".to_owned()))?;
        receiver
            .await
            .map_err(|_| StoreError::Io("the flusher stopped before flushing".to_owned()))?
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}

async fn run_flusher(
    db: sled::Db,
    mut receiver: mpsc::UnboundedReceiver<Waiter>,
    flushes: Arc<AtomicU64>,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while let Ok(waiter) = receiver.try_recv() {
            batch.push(waiter);
        }
        let db = db.clone();
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_bytes)) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Io(format!("flush failed: {error}"))),
            Err(error) => Err(StoreError::Io(format!("flush task failed: {error}"))),
        };
        flushes.fetch_add(1, Ordering::Relaxed);
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}
