//! What the policy author's commands share: where the policies and the configuration come
//! from, loading them (with diagnostics printed at their source line), and reading the
//! test suites of `<policies>/tests/*.toml`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::authoring::diagnostic::{DiagnosticLevel, render};
use crate::authoring::suite::{Suite, parse_suite};
use crate::config::{Config, LoadedConfig, Overrides};
use crate::engine::EngineSettings;
use crate::policy::{LoadError, PolicyBundle, load_policy_dir_with};

/// Where the policies and the configuration come from.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The policy directory (default: ./policies, or `policy.dir` of the configuration).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// A TOML configuration file (profile, rate windows, trusted issuers, obligations…).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The configuration and the loaded policies, or the exit status after saying why not.
pub struct Loaded {
    pub config: Config,
    pub settings: EngineSettings,
    pub policies: PolicyBundle,
}

pub fn load(args: &PolicyArgs, print_warnings: bool) -> Result<Loaded, ExitCode> {
    let overrides = Overrides {
        policies: args.policies.clone(),
        ..Overrides::default()
    };
    let LoadedConfig { config, warnings } =
        Config::load(args.config.as_deref(), std::env::vars(), &overrides).map_err(|errors| {
            eprint!("clientgate: {errors}");
            ExitCode::from(2)
        })?;
    for warning in &warnings {
        eprintln!("clientgate: warning: {warning}");
    }
    let settings = crate::app::engine_settings(&config).map_err(|error| {
        eprintln!("clientgate: {error}");
        ExitCode::from(2)
    })?;
    let loaded = load_policy_dir_with(&config.policy.dir, &config.vocabulary())
        .and_then(|bundle| crate::app::fits_settings(bundle, &config.policy.dir, &settings));
    match loaded {
        Ok(policies) => {
            if print_warnings {
                print_problems(DiagnosticLevel::Warning, &policies.warnings);
            }
            Ok(Loaded {
                config,
                settings,
                policies,
            })
        }
        Err(errors) => {
            print_problems(DiagnosticLevel::Error, &errors.0);
            eprintln!(
                "{}: {} error(s); nothing was loaded",
                config.policy.dir.display(),
                errors.0.len()
            );
            Err(ExitCode::FAILURE)
        }
    }
}

pub fn print_problems(level: DiagnosticLevel, problems: &[LoadError]) {
    for problem in problems {
        let source = fs::read_to_string(&problem.file).ok();
        eprint!("{}", render(level, problem, source.as_deref()));
    }
}

/// One parsed suite file.
pub struct SuiteFile {
    pub name: String,
    pub suite: Suite,
    /// Where the files it names (`document_file`) are.
    base: PathBuf,
}

impl SuiteFile {
    pub fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        fs::read(self.base.join(path))
    }
}

/// The suites in `dir`, sorted by name, and how many files could not be read or parsed
/// (each reported on standard error).
pub fn read_suites(dir: &Path) -> (Vec<SuiteFile>, usize) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut suites = Vec::new();
    let mut broken = 0;
    for file in files {
        let name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = fs::read_to_string(&file)
            .map_err(|error| error.to_string())
            .and_then(|text| parse_suite(&text).map_err(|error| error.to_string()));
        match parsed {
            Ok(suite) => {
                let base = file.parent().unwrap_or(Path::new(".")).to_owned();
                suites.push(SuiteFile { name, suite, base });
            }
            Err(error) => {
                eprintln!("error: {}: {error}", file.display());
                broken += 1;
            }
        }
    }
    (suites, broken)
}
