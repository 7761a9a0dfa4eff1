//! Group commit: callers that wrote to sled wait here for a flush that covers their write.
//! One flush serves every caller that arrived before it started, so under load the number
//! of flushes grows with time, not with the number of writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use super::StoreError;

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// A handle to the flusher task.
#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
    /// Turns true once the flusher has stopped and let go of the database.
    stopped: watch::Receiver<bool>,
}

impl GroupCommit {
    /// Starts the flusher task for `db` on the current tokio runtime.
    pub fn start(db: sled::Db) -> GroupCommit {
        let (sender, receiver) = mpsc::unbounded_channel();
        let flushes = Arc::new(AtomicU64::new(0));
        let (stopped_sender, stopped) = watch::channel(false);
        tokio::spawn(run_flusher(db, receiver, flushes.clone(), stopped_sender));
        GroupCommit {
            waiters: sender,
            flushes,
            stopped,
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

    /// Resolves once the flusher has stopped (every handle dropped) and released the
    /// database, so that the directory can be opened again.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut stopped = self.stopped.clone();
        async move {
            // An error means the flusher is gone, which is what is waited for.
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

async fn run_flusher(
    db: sled::Db,
    mut receiver: mpsc::UnboundedReceiver<Waiter>,
    flushes: Arc<AtomicU64>,
    stopped: watch::Sender<bool>,
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
    drop(db);
    let _ = stopped.send(true);
}
