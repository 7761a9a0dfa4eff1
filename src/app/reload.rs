//! Hot reload: the policy directory (and the shadow one) loaded again on a change, on
//! SIGHUP or on `AdminService.ReloadPolicies`. A new set is validated in full before it
//! replaces the one in force; a refused set changes nothing but the status.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::fits_settings;
use crate::engine::Engine;
use crate::events::Event;
use crate::policy::{LoadError, LoadErrors, Vocabulary, load_policy_dir_with};

/// What the last refused load said, for `GetPolicyStatus`.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Problems of the last refused load of the live directory; empty once a load succeeds.
    pub last_errors: Vec<LoadError>,
    pub last_error_at: Option<SystemTime>,
    /// When the set in force was put in force (at start, or by the last reload that
    /// changed it).
    pub loaded_at: Option<SystemTime>,
}

/// The result of one reload.
#[derive(Clone, Debug)]
pub struct ReloadReport {
    pub loaded: bool,
    /// The version in force afterwards.
    pub version: String,
    pub policy_count: usize,
    /// Why the live set (or the shadow set) was refused.
    pub errors: Vec<LoadError>,
    pub shadow_version: Option<String>,
}

pub struct PolicyReloader {
    engine: Arc<Engine>,
    dir: PathBuf,
    shadow_dir: Option<PathBuf>,
    vocabulary: Vocabulary,
    status: Mutex<ReloadStatus>,
    /// One reload at a time, whatever triggered it.
    serial: tokio::sync::Mutex<()>,
}

impl PolicyReloader {
    pub fn new(
        engine: Arc<Engine>,
        dir: PathBuf,
        shadow_dir: Option<PathBuf>,
        vocabulary: Vocabulary,
    ) -> PolicyReloader {
        PolicyReloader {
            engine,
            dir,
            shadow_dir,
            vocabulary,
            status: Mutex::new(ReloadStatus {
                loaded_at: Some(SystemTime::now()),
                ..ReloadStatus::default()
            }),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The live policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn shadow_dir(&self) -> Option<&Path> {
        self.shadow_dir.as_deref()
    }

    /// Loads the directories again; `trigger` names the cause in the log.
    pub async fn reload(&self, trigger: &str) -> ReloadReport {
        let _serial = self.serial.lock().await;
        let previous = self.engine.policies().version.clone();
        let (live, shadow) = {
            let dir = self.dir.clone();
            let shadow_dir = self.shadow_dir.clone();
            let vocabulary = self.vocabulary.clone();
            let engine = self.engine.clone();
            let loading = tokio::task::spawn_blocking(move || {
                let load = |dir: &Path| {
                    load_policy_dir_with(dir, &vocabulary)
                        .and_then(|bundle| fits_settings(bundle, dir, engine.settings()))
                };
                let live = load(&dir);
                let shadow = shadow_dir.map(|dir| load(&dir));
                (live, shadow)
            })
            .await;
            match loading {
                Ok(loaded) => loaded,
                Err(error) => (
                    Err(LoadErrors(vec![LoadError::plain(
                        &self.dir,
                        format!("the loading task failed: {error}"),
                    )])),
                    None,
                ),
            }
        };
        let mut errors = Vec::new();
        let loaded = match live {
            Ok(bundle) => {
                let version = bundle.version.clone();
                let mut status = self.lock_status();
                if version != previous {
                    self.engine.replace_policies(bundle);
                    info!(trigger, %previous, %version, "policies reloaded");
                    status.loaded_at = Some(SystemTime::now());
                    self.engine
                        .events()
                        .publish(Event::PolicyReloaded { version });
                }
                *status = ReloadStatus {
                    loaded_at: status.loaded_at,
                    ..ReloadStatus::default()
                };
                true
            }
            Err(refused) => {
                warn!(
                    trigger,
                    version = %previous,
                    errors = %refused,
                    "policies refused; the set in force keeps serving"
                );
                {
                    let mut status = self.lock_status();
                    *status = ReloadStatus {
                        last_errors: refused.0.clone(),
                        last_error_at: Some(SystemTime::now()),
                        loaded_at: status.loaded_at,
                    };
                }
                self.engine.events().publish(Event::PolicyReloadFailed {
                    dir: self.dir.display().to_string(),
                    version_in_force: previous.clone(),
                    errors: refused.0.iter().map(ToString::to_string).collect(),
                });
                errors.extend(refused.0);
                false
            }
        };
        match shadow {
            Some(Ok(bundle)) => {
                let changed = self
                    .engine
                    .shadow()
                    .is_none_or(|current| current.version != bundle.version);
                if changed {
                    info!(trigger, version = %bundle.version, "shadow policies loaded");
                    self.engine.replace_shadow(Some(bundle));
                }
            }
            Some(Err(refused)) => {
                warn!(trigger, errors = %refused, "shadow policies refused; the previous candidate stays");
                errors.extend(refused.0);
            }
            None => {}
        }
        let policies = self.engine.policies();
        ReloadReport {
            loaded,
            version: policies.version.clone(),
            policy_count: policies.policy_count(),
            errors,
            shadow_version: self.engine.shadow().map(|shadow| shadow.version.clone()),
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The directories this reloader watches.
    fn watched(&self) -> Vec<PathBuf> {
        std::iter::once(self.dir.clone())
            .chain(self.shadow_dir.clone())
            .collect()
    }
}

/// Checks the directories every `interval`; a change is loaded once the files have stayed
/// the same for one whole interval (so an editor's or a deploy's several writes make one
/// reload, and a half-written set is not tried).
pub async fn watch(reloader: Arc<PolicyReloader>, interval: Duration) {
    let dirs = reloader.watched();
    let mut seen = digest_blocking(&dirs).await;
    let mut settling: Option<[u8; 32]> = None;
    loop {
        tokio::time::sleep(interval).await;
        let now = digest_blocking(&dirs).await;
        if now == seen {
            settling = None;
        } else if settling == Some(now) {
            reloader.reload("file change").await;
            seen = now;
            settling = None;
        } else {
            settling = Some(now);
        }
    }
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub async fn reload_on_hangup(reloader: Arc<PolicyReloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; reload with AdminService.ReloadPolicies");
        return;
    };
    while hangups.recv().await.is_some() {
        reloader.reload("SIGHUP").await;
    }
}

async fn digest_blocking(dirs: &[PathBuf]) -> [u8; 32] {
    let dirs = dirs.to_vec();
    tokio::task::spawn_blocking(move || digest(&dirs))
        .await
        .unwrap_or([0; 32])
}

/// A hash of the names and contents of the files a policy set is made of (the known-clients
/// registry among them).
fn digest(dirs: &[PathBuf]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| {
                        let registry = path
                            .file_name()
                            .is_some_and(|name| name == crate::known_clients::FILE);
                        registry
                            || path.extension().is_some_and(|ext| {
                                ext == "cedar" || ext == "cedarschema" || ext == "json"
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for file in files {
            hasher.update(file.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(std::fs::read(&file).unwrap_or_default());
            hasher.update([0]);
        }
    }
    hasher.finalize().into()
}
