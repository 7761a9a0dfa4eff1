//! `clientgate test`: run the policy test suites in `<policies>/tests/*.toml`.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use super::policies::{PolicyArgs, load, read_suites};
use crate::authoring::suite::{CaseResult, junit_xml, run_suite};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Also write the results as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

pub fn test(args: TestArgs) -> ExitCode {
    let loaded = match load(&args.policy, false) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let tests_dir = loaded.config.policy.dir.join("tests");
    let (suites, broken) = read_suites(&tests_dir);
    let now = SystemTime::now();
    let mut results: Vec<CaseResult> = Vec::new();
    for file in &suites {
        results.extend(run_suite(
            &file.name,
            &file.suite,
            &loaded.policies,
            &loaded.settings,
            &|path| file.read(path),
            now,
        ));
    }
    for result in results.iter().filter(|result| !result.passed()) {
        println!("FAIL {} › {}", result.suite, result.name);
        for failure in &result.failures {
            println!("    {failure}");
        }
    }
    let passed = results.iter().filter(|result| result.passed()).count();
    let failed = results.len() - passed;
    if let Some(path) = &args.junit
        && let Err(error) = fs::write(path, junit_xml(&results))
    {
        eprintln!("clientgate: cannot write `{}`: {error}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{passed} passed, {failed} failed");
    if results.is_empty() && broken == 0 {
        eprintln!(
            "clientgate: no test cases in {}/*.toml",
            tests_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if failed > 0 || broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
