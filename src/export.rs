//! The decision export (`log.decisions`): every decision also as one JSON line, on
//! standard output or in a file rotated by size, so that a SIEM collects the log without
//! the admin API. Lines are queued and written by one thread, off the answer's path; a full
//! queue drops the line (counted in `clientgate_decision_export_dropped_total` — the
//! decision itself is in the store regardless).
//!
//! A line is the decision record as `GetDecision` shows it, with `"type": "decision"` and
//! `"kept": false` for a decision the store shed under its size budget.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use tracing::warn;

use crate::events::{Event, Sink};
use crate::metrics::Metrics;

/// Lines waiting to be written at most.
const QUEUE_LINES: usize = 65_536;

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    /// `path`, renamed to `path.1` (and `.1` to `.2`, …, keeping `keep`) once it would
    /// grow past `max_bytes`.
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
    },
}

/// What the writer thread is given.
enum Item {
    Line(Vec<u8>),
    /// Answer once every line queued before it is written and flushed.
    Flush(std::sync::mpsc::Sender<()>),
}

/// The sink that queues decision lines for the writer thread.
pub struct Exporter {
    lines: SyncSender<Item>,
    metrics: Arc<Metrics>,
}

impl Exporter {
    /// Opens the target and starts the writer thread.
    pub fn start(target: Target, metrics: Arc<Metrics>) -> std::io::Result<Exporter> {
        let output = Output::open(target)?;
        let (lines, receiver) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("decision-export".to_owned())
            .spawn(move || write_lines(output, receiver))?;
        Ok(Exporter { lines, metrics })
    }

    /// Waits (at most `timeout`) until every line queued so far is written: at shutdown,
    /// so that the last decisions reach the export too.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (done, written) = std::sync::mpsc::channel();
        let mut item = Item::Flush(done);
        // Never a blocking send: a writer stuck on a stalled stdout must not hold shutdown.
        loop {
            match self.lines.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
        written
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

impl Sink for Exporter {
    fn publish(&self, event: &Event) {
        let Event::Decided { record, kept, .. } = event else {
            return;
        };
        let mut line = match serde_json::to_value(record.as_ref()) {
            Ok(serde_json::Value::Object(fields)) => {
                let mut object = serde_json::Map::new();
                object.insert("type".to_owned(), "decision".into());
                object.insert("kept".to_owned(), (*kept).into());
                object.extend(fields);
                serde_json::Value::Object(object).to_string().into_bytes()
            }
            _ => return,
        };
        line.push(b'\n');
        match self.lines.try_send(Item::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.export_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.export_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

enum Output {
    Stdout,
    File {
        file: File,
        size: u64,
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
    },
}

impl Output {
    fn open(target: Target) -> std::io::Result<Output> {
        match target {
            Target::Stdout => Ok(Output::Stdout),
            Target::File {
                path,
                max_bytes,
                keep,
            } => {
                let file = append(&path)?;
                let size = file.metadata()?.len();
                Ok(Output::File {
                    file,
                    size,
                    path,
                    max_bytes,
                    keep,
                })
            }
        }
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().write_all(line),
            Output::File {
                file,
                size,
                path,
                max_bytes,
                keep,
            } => {
                if *size > 0 && *size + line.len() as u64 > *max_bytes {
                    file.flush()?;
                    // Whatever fails below, the count restarts: a failing rotation is not
                    // retried on every line (which would shift the kept files away).
                    *size = 0;
                    rotate(path, *keep)?;
                    *file = append(path)?;
                }
                file.write_all(line)?;
                *size += line.len() as u64;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().flush(),
            Output::File { file, .. } => file.flush(),
        }
    }
}

/// Opens `path` to append, creating it readable by its owner only (decision lines carry
/// caller IPs and user agents).
fn append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    // A file left by an earlier run with a wider mode is narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// `path.{keep-1}` → `path.{keep}` … `path` → `path.1`; the oldest beyond `keep` is removed.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    if !path.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        if numbered(n).exists() {
            std::fs::rename(numbered(n), numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

fn write_lines(mut output: Output, items: Receiver<Item>) {
    let mut failing = false;
    while let Ok(first) = items.recv() {
        let mut result = Ok(());
        let mut flushed = Vec::new();
        let mut item = Some(first);
        while let Some(next) = item.take() {
            match next {
                Item::Line(line) => {
                    if result.is_ok() {
                        result = output.write(&line);
                    }
                }
                Item::Flush(done) => flushed.push(done),
            }
            item = items.try_recv().ok();
        }
        let result = result.and_then(|()| output.flush());
        for done in flushed {
            let _ = done.send(());
        }
        match (result, failing) {
            (Err(error), false) => {
                warn!(%error, "cannot write the decision export; lines are lost until it works again");
                failing = true;
            }
            (Ok(()), true) => failing = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions.jsonl");
        let mut output = Output::open(Target::File {
            path: path.clone(),
            max_bytes: 10,
            keep: 2,
        })
        .unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            output.write(line.as_bytes()).unwrap();
        }
        output.flush().unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("decisions.jsonl"), "dddddd\n");
        assert_eq!(read("decisions.jsonl.1"), "cccccc\n");
        assert_eq!(read("decisions.jsonl.2"), "bbbbbb\n");
        assert!(
            !dir.path().join("decisions.jsonl.3").exists(),
            "only `keep` are kept"
        );
    }
}
