//! `clientgate registry`: the known-clients registry of a policy directory
//! (`known-clients.toml`): `list` its entries, `show ID` one of them.

use std::process::ExitCode;

use super::policies::{PolicyArgs, load};
use crate::known_clients::{KnownClient, Pin};

#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RegistryCommand {
    /// One line per known client: id, name, publisher, how it registers.
    List {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Everything the registry says of one client.
    Show {
        /// The client's id, e.g. `claude-code`.
        id: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

pub fn registry(args: RegistryArgs) -> ExitCode {
    let policy = match &args.command {
        RegistryCommand::List { policy } | RegistryCommand::Show { policy, .. } => policy,
    };
    let loaded = match load(policy, false) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    let registry = loaded.policies.registry();
    match args.command {
        RegistryCommand::List { .. } => {
            for client in &registry.clients {
                println!(
                    "{:<16} {:<22} {:<16} {}",
                    client.id,
                    client.name,
                    client.publisher_domain,
                    client.registers().join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        RegistryCommand::Show { id, .. } => match registry.get(&id) {
            Some(client) => {
                print!("{}", describe(client));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "clientgate: no known client `{id}` in {} (`clientgate registry list` lists them)",
                    loaded
                        .config
                        .policy
                        .dir
                        .join(crate::known_clients::FILE)
                        .display()
                );
                ExitCode::from(2)
            }
        },
    }
}

/// One entry, a fact per line.
fn describe(client: &KnownClient) -> String {
    let mut lines = vec![
        format!("id: {}", client.id),
        format!("name: {}", client.name),
    ];
    if !client.also_named.is_empty() {
        lines.push(format!("also named: {}", client.also_named.join(", ")));
    }
    lines.push(format!(
        "publisher: {} ({})",
        client.publisher, client.publisher_domain
    ));
    lines.push(format!(
        "native: {}",
        if client.native {
            "yes (anyone can run it: recognizing it proves less)"
        } else {
            "no"
        }
    ));
    for pattern in &client.cimd {
        lines.push(format!("cimd: {}", pattern.as_str()));
    }
    for pattern in &client.dcr_redirect_uris {
        lines.push(format!("dcr redirect: {}", pattern.as_str()));
    }
    if !client.grant_types.is_empty() {
        lines.push(format!("grant types: {}", client.grant_types.join(", ")));
    }
    for (client_id, pin) in &client.pins {
        lines.push(match pin {
            Pin::Document(body) => {
                format!("pinned: {client_id} ({} bytes, not fetched)", body.len())
            }
            Pin::Sha256(sha256) => format!("pinned: {client_id} (sha256 {sha256})"),
        });
    }
    lines.push(format!("source: {}", client.source));
    lines.push(format!("checked: {}", client.checked));
    lines.join("\n") + "\n"
}
