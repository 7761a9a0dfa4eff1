//! `clientgate token new`: make a bearer token for a caller. The `[[auth.tokens]]` table
//! (its name, the token's SHA-256, its roles) goes to stdout, ready to append to
//! `clientgate.toml`; the token itself goes only to the file `--out` names, created for
//! its owner alone (mode 0600) and never overwritten, or to stderr when there is none.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::{Role, token_digest};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Make a token: its `[[auth.tokens]]` table on stdout, the token in `--out` (or on stderr).
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// Who holds it: recorded as the resolver and in the admin audit trail.
    #[arg(long)]
    name: String,
    /// A role it holds (evaluate, operator, admin); repeat for several.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    roles: Vec<Role>,
    /// Write the token to this new file (mode 0600), usable as the caller's secret and as
    /// the table's `token_file`; without it the token is printed on stderr.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| {
        let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        format!("`{text}` is not a role ({})", known.join(", "))
    })
}

pub fn token(args: TokenArgs) -> ExitCode {
    match args.command {
        TokenCommand::New(args) => new(args),
    }
}

fn new(args: NewArgs) -> ExitCode {
    if args.name.trim().is_empty() {
        eprintln!("error: --name must name who holds the token");
        return ExitCode::from(2);
    }
    let token = match generate() {
        Ok(token) => token,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match &args.out {
        Some(path) => {
            if let Err(error) = write_secret(path, &token) {
                eprintln!("error: cannot create {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
        None => eprintln!("token (shown once; give it to `{}`): {token}", args.name),
    }
    print!("{}", table(&args.name, &token, &args.roles));
    ExitCode::SUCCESS
}

/// A new token: `cg_` and 32 random bytes, base64url.
fn generate() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_owned())?;
    Ok(format!("cg_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The `[[auth.tokens]]` table of `token`: its SHA-256, never the token.
fn table(name: &str, token: &str, roles: &[Role]) -> String {
    let roles: Vec<String> = roles
        .iter()
        .map(|role| format!("\"{}\"", role.as_str()))
        .collect();
    format!(
        "[[auth.tokens]]\nname = {}\nsha256 = \"{}\"\nroles = [{}]\n",
        toml::Value::String(name.to_owned()),
        hex::encode(token_digest(token)),
        roles.join(", ")
    )
}

/// Writes `token` to a file that did not exist, readable by its owner alone.
fn write_secret(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{token}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_holds_the_digest_and_roles_never_the_token() {
        let text = table(
            "as \"prod\"",
            "cg_secret",
            &[Role::Evaluate, Role::Operator],
        );
        assert!(!text.contains("cg_secret"));
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let entry = &parsed["auth"]["tokens"][0];
        assert_eq!(entry["name"].as_str(), Some("as \"prod\""));
        assert_eq!(
            entry["sha256"].as_str(),
            Some(hex::encode(token_digest("cg_secret")).as_str())
        );
        assert_eq!(
            entry["roles"].as_array().unwrap(),
            &vec![toml::Value::from("evaluate"), toml::Value::from("operator")]
        );
    }

    #[test]
    fn tokens_are_new_each_time_and_long() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), "cg_".len() + 43, "32 bytes of base64url");
    }

    #[test]
    fn an_unknown_role_is_refused_naming_the_roles() {
        assert_eq!(
            parse_role("root").unwrap_err(),
            "`root` is not a role (evaluate, operator, admin)"
        );
    }
}
