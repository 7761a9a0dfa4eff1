//! Group commit: callers that wrote to sled wait here for a flush that covers their write.
//! One flush serves every caller that arrived before it started, so under load the number
//! of flushes grows with time, not with the number of writes.
//!
//! A flush is power-loss durable: sled's own `flush` writes its log with `sync_file_range`,
//! which flushes neither the file's metadata nor the device's cache, so each group commit
//! then calls `fdatasync` on sled's log file (and syncs any blob files sled wrote, with their
//! directory) before anyone is told their write is durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};

use super::StoreError;
use crate::metrics::{BATCH_BUCKETS, Histogram, HistogramSnapshot, LATENCY_BUCKETS_MICROS};

type Waiter = oneshot::Sender<Result<(), StoreError>>;

/// How long a group commit may gather writers, and how many, before it flushes however many
/// keep coming. Gathering costs no throughput (the core is busy deciding the writes it waits
/// for; at 128 in flight a commit gathers ~65 of them over ~25 ms here), so the bounds only
/// keep an endless stream from holding the first writer back.
const GATHER_AT_MOST: std::time::Duration = std::time::Duration::from_millis(50);
const GATHER_AT_MOST_WRITERS: usize = 1024;

/// A handle to the flusher task.
#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
    timing: Arc<Timing>,
    /// Turns true once the flusher has stopped and let go of the database.
    stopped: watch::Receiver<bool>,
}

impl GroupCommit {
    /// Starts the flusher task for the database `db` in `dir` on the current tokio runtime.
    pub fn start(db: sled::Db, dir: &Path) -> Result<GroupCommit, StoreError> {
        let disk = Disk::open(dir)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let flushes = Arc::new(AtomicU64::new(0));
        let timing = Arc::new(Timing {
            micros: Histogram::new(&LATENCY_BUCKETS_MICROS),
            batch: Histogram::new(&BATCH_BUCKETS),
        });
        let (stopped_sender, stopped) = watch::channel(false);
        tokio::spawn(run_flusher(
            db,
            disk,
            receiver,
            (flushes.clone(), timing.clone()),
            stopped_sender,
        ));
        Ok(GroupCommit {
            waiters: sender,
            flushes,
            timing,
            stopped,
        })
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

    /// How long group commits took (µs) and how many writes each made durable.
    pub fn timing(&self) -> (HistogramSnapshot, HistogramSnapshot) {
        (self.timing.micros.snapshot(), self.timing.batch.snapshot())
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

/// What the flusher measures of each group commit.
struct Timing {
    micros: Histogram,
    batch: Histogram,
}

async fn run_flusher(
    db: sled::Db,
    disk: Disk,
    mut receiver: mpsc::UnboundedReceiver<Waiter>,
    (flushes, timing): (Arc<AtomicU64>, Arc<Timing>),
    stopped: watch::Sender<bool>,
) {
    let mut disk = Some(disk);
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        // Before flushing, let the decisions already running reach this commit: yield to
        // them until a pass brings no new writer (or a bound is reached). Under load one
        // flush then serves dozens of writes; alone, a decision waits one yield.
        let gathering = std::time::Instant::now();
        loop {
            while let Ok(waiter) = receiver.try_recv() {
                batch.push(waiter);
            }
            tokio::task::yield_now().await;
            if receiver.is_empty()
                || batch.len() >= GATHER_AT_MOST_WRITERS
                || gathering.elapsed() >= GATHER_AT_MOST
            {
                break;
            }
        }
        let db = db.clone();
        let started = std::time::Instant::now();
        let mut taken = disk
            .take()
            .expect("the disk handle is put back after each flush");
        let (result, back) = match tokio::task::spawn_blocking(move || {
            let result = flush(&db, &mut taken);
            (result, taken)
        })
        .await
        {
            Ok((result, back)) => (result, Some(back)),
            Err(error) => (
                Err(StoreError::Io(format!("flush task failed: {error}"))),
                None,
            ),
        };
        let Some(back) = back else {
            for waiter in batch {
                let _ = waiter.send(result.clone());
            }
            break;
        };
        disk = Some(back);
        flushes.fetch_add(1, Ordering::Relaxed);
        timing
            .micros
            .observe(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        timing.batch.observe(batch.len() as u64);
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
    drop(db);
    let _ = stopped.send(true);
}

fn flush(db: &sled::Db, disk: &mut Disk) -> Result<(), StoreError> {
    db.flush()
        .map_err(|error| StoreError::Io(format!("flush failed: {error}")))?;
    disk.sync()
}

/// sled's files, as the flusher syncs them.
struct Disk {
    log: File,
    blobs: PathBuf,
    /// When the blob directory last changed as far as the last sync saw.
    blobs_synced: Option<SystemTime>,
}

impl Disk {
    fn open(dir: &Path) -> Result<Disk, StoreError> {
        let log = File::open(dir.join("db")).map_err(|error| {
            StoreError::Io(format!(
                "cannot open `{}` to sync it: {error}",
                dir.join("db").display()
            ))
        })?;
        Ok(Disk {
            log,
            blobs: dir.join("blobs"),
            blobs_synced: None,
        })
    }

    /// `fdatasync` of the log; blob files (values too large for the log, rare) are synced
    /// one by one, with their directory, whenever the directory changed since the last sync.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.log.sync_data().map_err(|error| {
            StoreError::Io(format!("fdatasync of the store's log failed: {error}"))
        })?;
        let changed = std::fs::metadata(&self.blobs)
            .and_then(|meta| meta.modified())
            .ok();
        if changed.is_some() && changed != self.blobs_synced {
            let sync = |path: &Path| File::open(path).and_then(|file| file.sync_all());
            for entry in std::fs::read_dir(&self.blobs)
                .map_err(|error| StoreError::Io(format!("cannot list the blob files: {error}")))?
            {
                let path = entry
                    .map_err(|error| {
                        StoreError::Io(format!("cannot list the blob files: {error}"))
                    })?
                    .path();
                match sync(&path) {
                    Ok(()) => {}
                    // sled removed it meanwhile (a blob replaced by a newer one).
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(StoreError::Io(format!(
                            "fsync of `{}` failed: {error}",
                            path.display()
                        )));
                    }
                }
            }
            sync(&self.blobs).map_err(|error| {
                StoreError::Io(format!("fsync of the blob directory failed: {error}"))
            })?;
            self.blobs_synced = changed;
        }
        Ok(())
    }
}
