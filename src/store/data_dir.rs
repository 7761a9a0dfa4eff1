//! The data directory and its generations.
//!
//! sled 0.34 does not give freed space back: a store that keeps only the last hour of a
//! steady stream of decisions still grows without end. So the data directory holds
//! *generations*, each a complete sled database (`gen-000001`, `gen-000002`, …), and the
//! file `CURRENT` names the live one. Compaction copies the live data into the next
//! generation, makes it durable, and only then switches `CURRENT` by an atomic rename: a
//! crash at any point leaves `CURRENT` naming a complete generation, and the next start
//! removes whatever else it finds. `LOCK` is held for as long as a clientgate uses the
//! directory (one process per data directory).
//!
//! A directory written before generations existed holds the sled files at its top level;
//! it is opened in place and moves into `gen-000001` at its first compaction.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;

const CURRENT: &str = "CURRENT";
const LOCK: &str = "LOCK";
const PREFIX: &str = "gen-";
/// The files sled 0.34 keeps at the top of its directory.
const LEGACY_FILES: [&str; 3] = ["conf", "db", "blobs"];

/// One generation: its name (`.` for a directory from before generations) and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationPath {
    pub name: String,
    pub path: PathBuf,
}

/// A locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `root` if needed and locks it for this process.
    pub fn lock(root: &Path) -> Result<DataDir, StoreError> {
        let open_error = |error: std::io::Error| match super::no_space(error.kind()) {
            true => StoreError::DiskFull(format!("cannot open `{}`: {error}", root.display())),
            false => StoreError::Open {
                path: root.display().to_string(),
                message: error.to_string(),
            },
        };
        fs::create_dir_all(root).map_err(open_error)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))
            .map_err(open_error)?;
        match lock.try_lock() {
            Ok(()) => Ok(DataDir {
                root: root.to_owned(),
                _lock: lock,
            }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Open {
                path: root.display().to_string(),
                message: "another process has it open (one clientgate per data directory)"
                    .to_owned(),
            }),
            Err(fs::TryLockError::Error(error)) => Err(open_error(error)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The live generation: the one `CURRENT` names, else the top-level sled files of an
    /// older directory, else a first generation for an empty directory.
    pub fn live(&self) -> Result<GenerationPath, StoreError> {
        match fs::read_to_string(self.root.join(CURRENT)) {
            Ok(text) => {
                let name = text.trim();
                if generation_number(name).is_none() {
                    return Err(StoreError::Corrupt {
                        key: CURRENT.to_owned(),
                        message: format!("`{name}` is not a generation name"),
                    });
                }
                Ok(self.generation(name))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if self.root.join("db").exists() {
                    Ok(GenerationPath {
                        name: ".".to_owned(),
                        path: self.root.clone(),
                    })
                } else {
                    Ok(self.generation(&generation_name(1)))
                }
            }
            Err(error) => Err(StoreError::Io(format!("cannot read `{CURRENT}`: {error}"))),
        }
    }

    /// The generation after `live`, emptied of any leftovers of an interrupted compaction.
    pub fn fresh_successor(&self, live: &GenerationPath) -> Result<GenerationPath, StoreError> {
        let number = generation_number(&live.name).unwrap_or(0) + 1;
        let next = self.generation(&generation_name(number));
        if next.path.exists() {
            fs::remove_dir_all(&next.path).map_err(io_error)?;
        }
        Ok(next)
    }

    /// Makes `generation` the live one, durably: a crash before this returns leaves the
    /// previous one live, a crash after it leaves this one.
    pub fn switch_to(&self, generation: &GenerationPath) -> Result<(), StoreError> {
        let staged = self.root.join(format!("{CURRENT}.new"));
        let mut file = File::create(&staged).map_err(io_error)?;
        file.write_all(format!("{}\n", generation.name).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error)?;
        fs::rename(&staged, self.root.join(CURRENT)).map_err(io_error)?;
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error)
    }

    /// Removes every generation but `live`, and the top-level sled files once `live` is a
    /// generation directory. Best effort: what cannot be removed now is removed next time.
    pub fn remove_all_but(&self, live: &GenerationPath) -> Vec<String> {
        let mut failures = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return failures;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale_generation = generation_number(&name).is_some() && name != live.name;
            let stale_legacy = live.name != "." && is_legacy_file(&name);
            if !(stale_generation || stale_legacy) {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if let Err(error) = removed {
                failures.push(format!("{}: {error}", path.display()));
            }
        }
        failures
    }

    fn generation(&self, name: &str) -> GenerationPath {
        GenerationPath {
            name: name.to_owned(),
            path: self.root.join(name),
        }
    }
}

fn generation_name(number: u64) -> String {
    format!("{PREFIX}{number:06}")
}

fn generation_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_legacy_file(name: &str) -> bool {
    LEGACY_FILES.contains(&name) || name.starts_with("snap.")
}

fn io_error(error: std::io::Error) -> StoreError {
    match super::no_space(error.kind()) {
        true => StoreError::DiskFull(error.to_string()),
        false => StoreError::Io(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_round_trip_and_refuse_look_alikes() {
        assert_eq!(generation_name(7), "gen-000007");
        assert_eq!(generation_number("gen-000007"), Some(7));
        assert_eq!(generation_number("gen-1234567"), Some(1_234_567));
        for name in [
            "gen-", "gen-12a", "gen--1", "gen-+1", "conf", "../gen-1", ".",
        ] {
            assert_eq!(generation_number(name), None, "{name}");
        }
    }

    #[test]
    fn an_empty_directory_starts_at_the_first_generation() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::lock(dir.path()).unwrap();
        assert_eq!(data.live().unwrap().name, "gen-000001");
    }

    #[test]
    fn a_switch_survives_reopening_and_removes_nothing_live() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::lock(dir.path()).unwrap();
        let first = data.live().unwrap();
        fs::create_dir_all(&first.path).unwrap();
        let second = data.fresh_successor(&first).unwrap();
        assert_eq!(second.name, "gen-000002");
        fs::create_dir_all(&second.path).unwrap();
        data.switch_to(&second).unwrap();
        assert_eq!(data.remove_all_but(&second), Vec::<String>::new());
        assert!(!first.path.exists(), "the old generation is removed");
        assert!(second.path.exists());
        drop(data);
        let reopened = DataDir::lock(dir.path()).unwrap();
        assert_eq!(reopened.live().unwrap(), second);
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DataDir::lock(dir.path()).unwrap();
        let error = DataDir::lock(dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("one clientgate per data directory"),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_current_file_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CURRENT), "../../etc\n").unwrap();
        let data = DataDir::lock(dir.path()).unwrap();
        let error = data.live().unwrap_err();
        assert!(
            error.to_string().contains("not a generation name"),
            "{error}"
        );
    }
}
