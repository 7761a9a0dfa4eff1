//! Copying a live sled database into a fresh one while writes go on.
//!
//! [`OnlineCopy::watch`] subscribes to every tree of the source (it must be called while
//! no write is in flight, so that every later write is seen) and starts a thread that keeps
//! the subscriptions drained, so that writers never wait on a full subscription buffer;
//! [`OnlineCopy::copy`] copies the trees; [`OnlineCopy::catch_up`] (again with no write in
//! flight) replays every write seen since `watch`, in order per key. A key copied before a
//! write to it is set right by the replay; a key copied after it gets the same value twice.
//! So writes are held back only for the replay, not for the copy.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::StoreError;

pub(super) struct OnlineCopy {
    target: sled::Db,
    names: Vec<sled::IVec>,
    stop: Arc<AtomicBool>,
    drainer: Option<JoinHandle<Vec<Vec<sled::Event>>>>,
}

impl OnlineCopy {
    /// Creates the target database at `to` and starts watching every tree of `from`. No
    /// write to `from` may be in flight.
    pub(super) fn watch(from: &sled::Db, to: &Path) -> Result<OnlineCopy, StoreError> {
        let target = sled::Config::new().path(to).open()?;
        let names = from.tree_names();
        let subscribers = names
            .iter()
            .map(|name| Ok(from.open_tree(name)?.watch_prefix(Vec::new())))
            .collect::<Result<Vec<_>, sled::Error>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let drainer = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("store-compaction".to_owned())
                .spawn(move || drain_until_stopped(subscribers, &stop))
                .map_err(|error| StoreError::Io(error.to_string()))?
        };
        Ok(OnlineCopy {
            target,
            names,
            stop,
            drainer: Some(drainer),
        })
    }

    /// Copies every watched tree of `from` into the target.
    pub(super) fn copy(&mut self, from: &sled::Db) -> Result<(), StoreError> {
        const CHUNK: usize = 10_000;
        for name in &self.names {
            let source = from.open_tree(name)?;
            let copy = self.target.open_tree(name)?;
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in source.iter() {
                let (key, value) = entry?;
                batch.insert(key, value);
                pending += 1;
                if pending == CHUNK {
                    copy.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            copy.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Replays the writes seen since [`OnlineCopy::watch`] and makes the target durable.
    /// No write to the source may be in flight. Returns the target and the number of writes
    /// replayed.
    pub(super) fn catch_up(mut self) -> Result<(sled::Db, u64), StoreError> {
        self.stop.store(true, Ordering::Release);
        let seen = self
            .drainer
            .take()
            .map(JoinHandle::join)
            .transpose()
            .map_err(|_| StoreError::Io("the compaction thread panicked".to_owned()))?
            .unwrap_or_default();
        let mut replayed = 0;
        for (name, events) in self.names.iter().zip(seen) {
            let tree = self.target.open_tree(name)?;
            for event in events {
                match event {
                    sled::Event::Insert { key, value } => {
                        tree.insert(key, value)?;
                    }
                    sled::Event::Remove { key } => {
                        tree.remove(key)?;
                    }
                }
                replayed += 1;
            }
        }
        self.target.flush()?;
        Ok((self.target.clone(), replayed))
    }
}

impl Drop for OnlineCopy {
    fn drop(&mut self) {
        // An abandoned copy stops its thread (a finished one already has).
        self.stop.store(true, Ordering::Release);
    }
}

/// Collects the writes seen by each subscriber, in order, until `stop` is set; then
/// collects once more, which gets every write completed before `stop` was set.
///
/// Subscribers are polled as futures: sled 0.34's `Subscriber::next_timeout` stays stuck on
/// a reservation whose write was abandoned (a conflict retried, a no-op set) and then misses
/// every later write of its tree, which lost decisions written during a compaction.
fn drain_until_stopped(
    mut subscribers: Vec<sled::Subscriber>,
    stop: &AtomicBool,
) -> Vec<Vec<sled::Event>> {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let mut context = Context::from_waker(Waker::noop());
    let mut seen = vec![Vec::new(); subscribers.len()];
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let mut any = false;
        for (subscriber, seen) in subscribers.iter_mut().zip(seen.iter_mut()) {
            while let Poll::Ready(Some(event)) = Pin::new(&mut *subscriber).poll(&mut context) {
                seen.push(event);
                any = true;
            }
        }
        if stopping {
            return seen;
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporary() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn contents(db: &sled::Db, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        db.open_tree(tree)
            .unwrap()
            .iter()
            .map(|entry| {
                let (key, value) = entry.unwrap();
                (key.to_vec(), value.to_vec())
            })
            .collect()
    }

    #[test]
    fn writes_made_during_the_copy_reach_the_target() {
        let source = temporary();
        let tree = source.open_tree("decisions").unwrap();
        for n in 0..5_000u32 {
            tree.insert(n.to_be_bytes(), b"first".as_slice()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut copy = OnlineCopy::watch(&source, &dir.path().join("copy")).unwrap();

        let writer = {
            let tree = tree.clone();
            std::thread::spawn(move || {
                for n in 0..5_000u32 {
                    if n % 3 == 0 {
                        tree.remove(n.to_be_bytes()).unwrap();
                    } else {
                        tree.insert(n.to_be_bytes(), b"second".as_slice()).unwrap();
                    }
                }
                for n in 5_000..6_000u32 {
                    tree.insert(n.to_be_bytes(), b"new".as_slice()).unwrap();
                }
            })
        };
        copy.copy(&source).unwrap();
        writer.join().unwrap();
        let (target, replayed) = copy.catch_up().unwrap();

        assert!(
            replayed >= 6_000,
            "every write was seen, {replayed} replayed"
        );
        assert_eq!(
            contents(&target, "decisions"),
            contents(&source, "decisions")
        );
        assert_eq!(contents(&target, "decisions").len(), 6_000 - 1_667);
    }

    #[test]
    fn every_tree_is_copied_including_the_default_one() {
        let source = temporary();
        source.insert(b"default-key", b"value").unwrap();
        source
            .open_tree("meta")
            .unwrap()
            .insert(b"format_version", b"1")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut copy = OnlineCopy::watch(&source, &dir.path().join("copy")).unwrap();
        copy.copy(&source).unwrap();
        let (target, _) = copy.catch_up().unwrap();
        assert_eq!(
            target.get(b"default-key").unwrap().as_deref(),
            Some(b"value".as_slice())
        );
        assert_eq!(contents(&target, "meta"), contents(&source, "meta"));
    }
}
