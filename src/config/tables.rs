//! The array-of-tables settings — `[[auth.tokens]]`, `[[auth.clients]]`,
//! `[[notify.webhooks]]` — each table checked member by member; a problem is pushed with the
//! key of the member at fault (`auth.tokens[1].sha256`) and the entry left out.

use std::path::PathBuf;

use super::load::ConfigError;
use super::{ClientConfig, TokenConfig, TokenSecret, WebhookConfig, WebhookSecret};
use crate::auth::Role;

/// The `[[auth.tokens]]` tables, each checked; a problem is pushed with the key of the
/// member at fault (`auth.tokens[1].sha256`) and the entry left out.
pub(super) fn tokens(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<TokenConfig> {
    let mut tokens: Vec<TokenConfig> = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let mut problem = |member: &str, message: String| {
            errors.push(ConfigError {
                source: source.to_owned(),
                key: format!("auth.tokens[{index}]{member}"),
                message,
            });
        };
        if let Some(unknown) = table
            .keys()
            .find(|key| !["name", "sha256", "token_file", "roles"].contains(&key.as_str()))
        {
            problem(
                &format!(".{unknown}"),
                "not a token setting (name, sha256, token_file, roles)".to_owned(),
            );
            continue;
        }
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let Some(name) = text("name").filter(|name| !name.trim().is_empty()) else {
            problem(".name", "every token needs a name: who holds it".to_owned());
            continue;
        };
        if tokens.iter().any(|token| token.name == name) {
            problem(".name", format!("`{name}` names two tokens"));
            continue;
        }
        let secret = match (text("sha256"), text("token_file")) {
            (Some(hex), None) => match parse_digest(&hex) {
                Some(digest) => TokenSecret::Sha256(digest),
                None => {
                    problem(".sha256", "expected the 64 hex digits of the token's SHA-256 (`printf %s \"$TOKEN\" | sha256sum`)".to_owned());
                    continue;
                }
            },
            (None, Some(path)) if !path.is_empty() => TokenSecret::File(PathBuf::from(path)),
            _ => {
                problem(
                    "",
                    "give exactly one of `sha256` and `token_file`".to_owned(),
                );
                continue;
            }
        };
        match roles(table) {
            Some(roles) => tokens.push(TokenConfig {
                name,
                secret,
                roles,
            }),
            None => problem(".roles", ROLES_EXPECTED.to_owned()),
        }
    }
    tokens
}

/// The `[[notify.webhooks]]` tables, each checked like the tokens. A webhook's URL is
/// `https`, or `http` to a loopback address (its body tells of registrations, and its
/// signature is no secret from whoever reads the wire).
pub(super) fn webhooks(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<WebhookConfig> {
    const MEMBERS: [&str; 5] = ["url", "events", "secret", "secret_file", "format"];
    let mut webhooks = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let mut problem = |member: &str, message: String| {
            errors.push(ConfigError {
                source: source.to_owned(),
                key: format!("notify.webhooks[{index}]{member}"),
                message,
            });
        };
        if let Some(unknown) = table.keys().find(|key| !MEMBERS.contains(&key.as_str())) {
            problem(
                &format!(".{unknown}"),
                format!("not a webhook setting ({})", MEMBERS.join(", ")),
            );
            continue;
        }
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        };
        let Some(address) = text("url") else {
            problem(".url", "every webhook needs a `url`".to_owned());
            continue;
        };
        let url = match url::Url::parse(&address) {
            Ok(url) => url,
            Err(error) => {
                problem(".url", format!("`{address}` is not a URL: {error}"));
                continue;
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            problem(
                ".url",
                format!("`{address}` must be https (plain http only to a loopback address)"),
            );
            continue;
        }
        let events: Vec<String> = match table.get("events").and_then(toml::Value::as_array) {
            Some(events) => events
                .iter()
                .filter_map(toml::Value::as_str)
                .map(str::to_owned)
                .collect(),
            None => crate::events::WEBHOOK_EVENTS.map(str::to_owned).to_vec(),
        };
        if let Some(bad) = events
            .iter()
            .find(|event| !crate::events::WEBHOOK_EVENTS.contains(&event.as_str()))
        {
            problem(
                ".events",
                format!(
                    "`{bad}` is not an event (one of {})",
                    crate::events::WEBHOOK_EVENTS.join(", ")
                ),
            );
            continue;
        }
        let secret = match (text("secret"), text("secret_file")) {
            (Some(secret), None) if secret.len() >= 16 => WebhookSecret::Inline(secret),
            (None, Some(path)) if !path.is_empty() => WebhookSecret::File(PathBuf::from(path)),
            (Some(_), None) => {
                problem(
                    ".secret",
                    "a signing secret has at least 16 characters".to_owned(),
                );
                continue;
            }
            _ => {
                problem(
                    "",
                    "give exactly one of `secret` and `secret_file`".to_owned(),
                );
                continue;
            }
        };
        let format = match text("format").as_deref() {
            None | Some("json") => crate::notify::Format::Json,
            Some("slack") => crate::notify::Format::Slack,
            Some(other) => {
                problem(".format", format!("`{other}` is not one of json, slack"));
                continue;
            }
        };
        webhooks.push(WebhookConfig {
            url,
            events,
            secret,
            format,
        });
    }
    webhooks
}

/// The `[[auth.clients]]` tables, each checked like the tokens.
pub(super) fn clients(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<ClientConfig> {
    let mut clients: Vec<ClientConfig> = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let mut problem = |member: &str, message: String| {
            errors.push(ConfigError {
                source: source.to_owned(),
                key: format!("auth.clients[{index}]{member}"),
                message,
            });
        };
        if let Some(unknown) = table
            .keys()
            .find(|key| !["subject", "roles"].contains(&key.as_str()))
        {
            problem(
                &format!(".{unknown}"),
                "not a client setting (subject, roles)".to_owned(),
            );
            continue;
        }
        let subject = table
            .get("subject")
            .and_then(toml::Value::as_str)
            .map(str::trim);
        let Some(subject) = subject.filter(|subject| !subject.is_empty()) else {
            problem(
                ".subject",
                "every client needs the DNS name its certificate is for".to_owned(),
            );
            continue;
        };
        match roles(table) {
            Some(roles) => clients.push(ClientConfig {
                subject: subject.to_owned(),
                roles,
            }),
            None => problem(".roles", ROLES_EXPECTED.to_owned()),
        }
    }
    clients
}

const ROLES_EXPECTED: &str = "expected a list of one or more of evaluate, operator, admin";

/// The `roles` of a `[[auth.tokens]]` or `[[auth.clients]]` table: `None` unless it is a
/// non-empty list of known roles.
fn roles(table: &toml::Table) -> Option<Vec<Role>> {
    let roles: Vec<Role> = table
        .get("roles")?
        .as_array()?
        .iter()
        .map(|role| role.as_str().and_then(Role::parse))
        .collect::<Option<_>>()?;
    (!roles.is_empty()).then_some(roles)
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex.trim()).ok()?;
    bytes.try_into().ok()
}
