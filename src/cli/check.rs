//! `clientgate check`: validate a policy directory (schema, policies, entities,
//! annotations) and print its warnings.

use std::process::ExitCode;

use super::policies::{PolicyArgs, load};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    policy: PolicyArgs,
}

pub fn check(args: CheckArgs) -> ExitCode {
    match load(&args.policy, true) {
        Ok(loaded) => {
            println!(
                "{}: ok, {} policies, version {}, {} warning(s)",
                loaded.config.policy.dir.display(),
                loaded.policies.policy_count(),
                loaded.policies.version,
                loaded.policies.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(status) => status,
    }
}
