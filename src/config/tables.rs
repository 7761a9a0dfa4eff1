//! The array-of-tables settings — `[[auth.tokens]]`, `[[auth.clients]]`,
//! `[[notify.webhooks]]` — each table checked member by member; a problem is pushed with the
//! key of the member at fault (`auth.tokens[1].sha256`) and the entry left out.

use std::path::PathBuf;

use super::load::ConfigError;
use super::{ClientConfig, TokenConfig, TokenSecret, WebhookConfig, WebhookSecret};
use crate::auth::Role;

/// One table of an array being checked: its members, and where its problems go.
struct Entry<'a> {
    table: &'a toml::Table,
    /// `auth.tokens[1]`: what a problem's key starts with.
    key: String,
    source: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl Entry<'_> {
    /// A string member.
    fn text(&self, member: &str) -> Option<String> {
        self.table
            .get(member)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    }

    /// Pushes a problem with `member` (`".sha256"`, or `""` for the table as a whole) and
    /// leaves the entry out.
    fn refuse<T>(&mut self, member: &str, message: impl Into<String>) -> Option<T> {
        self.errors.push(ConfigError {
            source: self.source.to_owned(),
            key: format!("{}{member}", self.key),
            message: message.into(),
        });
        None
    }
}

/// Checks each table of the array `section` with `check` (given the entries accepted so
/// far), after refusing any member not in `members`; `what` names an entry in that
/// refusal ("a token setting").
fn each<T>(
    (source, section): (&str, &str),
    (members, what): (&[&str], &str),
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
    mut check: impl FnMut(&mut Entry, &[T]) -> Option<T>,
) -> Vec<T> {
    let mut accepted = Vec::new();
    for (index, table) in tables.iter().enumerate() {
        let mut entry = Entry {
            table,
            key: format!("{section}[{index}]"),
            source,
            errors: &mut *errors,
        };
        let checked = match table.keys().find(|key| !members.contains(&key.as_str())) {
            Some(unknown) => entry.refuse(
                &format!(".{unknown}"),
                format!("not {what} ({})", members.join(", ")),
            ),
            None => check(&mut entry, &accepted),
        };
        accepted.extend(checked);
    }
    accepted
}

/// The `[[auth.tokens]]` tables.
pub(super) fn tokens(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<TokenConfig> {
    const MEMBERS: [&str; 4] = ["name", "sha256", "token_file", "roles"];
    each(
        (source, "auth.tokens"),
        (&MEMBERS, "a token setting"),
        tables,
        errors,
        |entry, accepted: &[TokenConfig]| {
            let Some(name) = entry.text("name").filter(|name| !name.trim().is_empty()) else {
                return entry.refuse(".name", "every token needs a name: who holds it");
            };
            if accepted.iter().any(|token| token.name == name) {
                return entry.refuse(".name", format!("`{name}` names two tokens"));
            }
            let secret = match (entry.text("sha256"), entry.text("token_file")) {
                (Some(hex), None) => match parse_digest(&hex) {
                    Some(digest) => TokenSecret::Sha256(digest),
                    None => return entry.refuse(
                        ".sha256",
                        "expected the 64 hex digits of the token's SHA-256 (`printf %s \"$TOKEN\" | sha256sum`)",
                    ),
                },
                (None, Some(path)) if !path.is_empty() => TokenSecret::File(PathBuf::from(path)),
                _ => return entry.refuse("", "give exactly one of `sha256` and `token_file`"),
            };
            let Some(roles) = roles(entry.table) else {
                return entry.refuse(".roles", ROLES_EXPECTED);
            };
            Some(TokenConfig {
                name,
                secret,
                roles,
            })
        },
    )
}

/// The `[[notify.webhooks]]` tables. A webhook's URL is `https`, or `http` to a loopback
/// address (its body tells of registrations, and its signature is no secret from whoever
/// reads the wire).
pub(super) fn webhooks(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<WebhookConfig> {
    const MEMBERS: [&str; 5] = ["url", "events", "secret", "secret_file", "format"];
    each(
        (source, "notify.webhooks"),
        (&MEMBERS, "a webhook setting"),
        tables,
        errors,
        |entry, _: &[WebhookConfig]| {
            let Some(address) = entry.text("url") else {
                return entry.refuse(".url", "every webhook needs a `url`");
            };
            let url = match url::Url::parse(&address) {
                Ok(url) => url,
                Err(error) => {
                    return entry.refuse(".url", format!("`{address}` is not a URL: {error}"));
                }
            };
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name == "localhost",
                None => false,
            };
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return entry.refuse(
                    ".url",
                    format!("`{address}` must be https (plain http only to a loopback address)"),
                );
            }
            let events: Vec<String> =
                match entry.table.get("events").and_then(toml::Value::as_array) {
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
                return entry.refuse(
                    ".events",
                    format!(
                        "`{bad}` is not an event (one of {})",
                        crate::events::WEBHOOK_EVENTS.join(", ")
                    ),
                );
            }
            let secret = match (entry.text("secret"), entry.text("secret_file")) {
                (Some(secret), None) if secret.len() >= 16 => WebhookSecret::Inline(secret),
                (None, Some(path)) if !path.is_empty() => WebhookSecret::File(PathBuf::from(path)),
                (Some(_), None) => {
                    return entry.refuse(".secret", "a signing secret has at least 16 characters");
                }
                _ => return entry.refuse("", "give exactly one of `secret` and `secret_file`"),
            };
            let format = match entry.text("format").as_deref() {
                None | Some("json") => crate::notify::Format::Json,
                Some("slack") => crate::notify::Format::Slack,
                Some(other) => {
                    return entry.refuse(".format", format!("`{other}` is not one of json, slack"));
                }
            };
            Some(WebhookConfig {
                url,
                events,
                secret,
                format,
            })
        },
    )
}

/// The `[[auth.clients]]` tables.
pub(super) fn clients(
    source: &str,
    tables: &[toml::Table],
    errors: &mut Vec<ConfigError>,
) -> Vec<ClientConfig> {
    const MEMBERS: [&str; 2] = ["subject", "roles"];
    each(
        (source, "auth.clients"),
        (&MEMBERS, "a client setting"),
        tables,
        errors,
        |entry, _: &[ClientConfig]| {
            let subject = entry
                .text("subject")
                .map(|subject| subject.trim().to_owned());
            let Some(subject) = subject.filter(|subject| !subject.is_empty()) else {
                return entry.refuse(
                    ".subject",
                    "every client needs the DNS name its certificate is for",
                );
            };
            let Some(roles) = roles(entry.table) else {
                return entry.refuse(".roles", ROLES_EXPECTED);
            };
            Some(ClientConfig { subject, roles })
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(text: &str, section: &str) -> Vec<toml::Table> {
        let value: toml::Table = text.parse().unwrap();
        let (outer, inner) = section.split_once('.').unwrap();
        value[outer][inner]
            .as_array()
            .unwrap()
            .iter()
            .map(|table| table.as_table().unwrap().clone())
            .collect()
    }

    fn keys(errors: &[ConfigError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|error| (error.key.as_str(), error.message.as_str()))
            .collect()
    }

    #[test]
    fn each_bad_token_is_left_out_with_the_member_at_fault() {
        let digest = "ab".repeat(32);
        let text = format!(
            r#"
            [[auth.tokens]]
            name = "alice"
            sha256 = "{digest}"
            roles = ["operator"]
            [[auth.tokens]]
            name = "alice"
            sha256 = "{digest}"
            roles = ["admin"]
            [[auth.tokens]]
            name = "bob"
            token = "in the clear"
            [[auth.tokens]]
            name = "carol"
            sha256 = "{digest}"
            token_file = "/run/carol"
            roles = ["admin"]
            "#
        );
        let mut errors = Vec::new();
        let tokens = tokens("t.toml", &tables(&text, "auth.tokens"), &mut errors);
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].name, "alice");
        assert_eq!(tokens[0].roles, [Role::Operator]);
        assert_eq!(
            keys(&errors),
            [
                ("auth.tokens[1].name", "`alice` names two tokens"),
                (
                    "auth.tokens[2].token",
                    "not a token setting (name, sha256, token_file, roles)"
                ),
                (
                    "auth.tokens[3]",
                    "give exactly one of `sha256` and `token_file`"
                ),
            ]
        );
        assert!(errors.iter().all(|error| error.source == "t.toml"));
    }

    #[test]
    fn a_webhook_over_plain_http_elsewhere_than_loopback_is_refused() {
        let text = r#"
            [[notify.webhooks]]
            url = "http://127.0.0.1:9000/hook"
            secret = "0123456789abcdef"
            [[notify.webhooks]]
            url = "http://hooks.example.com/x"
            secret = "0123456789abcdef"
            [[notify.webhooks]]
            url = "https://hooks.example.com/x"
            secret = "short"
            [[notify.webhooks]]
            url = "https://hooks.example.com/x"
            secret_file = "/run/secret"
            events = ["registration.teleported"]
        "#;
        let mut errors = Vec::new();
        let hooks = webhooks("t.toml", &tables(text, "notify.webhooks"), &mut errors);
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].url.as_str(), "http://127.0.0.1:9000/hook");
        let keys = keys(&errors);
        assert_eq!(
            keys.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
            [
                "notify.webhooks[1].url",
                "notify.webhooks[2].secret",
                "notify.webhooks[3].events"
            ],
            "{keys:?}"
        );
        assert!(keys[0].1.contains("must be https"), "{keys:?}");
    }

    #[test]
    fn a_client_needs_a_subject_and_known_roles() {
        let text = r#"
            [[auth.clients]]
            subject = " as.example.com "
            roles = ["evaluate"]
            [[auth.clients]]
            subject = ""
            roles = ["evaluate"]
            [[auth.clients]]
            subject = "ops.example.com"
            roles = ["root"]
        "#;
        let mut errors = Vec::new();
        let clients = clients("t.toml", &tables(text, "auth.clients"), &mut errors);
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].subject, "as.example.com");
        assert_eq!(
            keys(&errors),
            [
                (
                    "auth.clients[1].subject",
                    "every client needs the DNS name its certificate is for"
                ),
                ("auth.clients[2].roles", ROLES_EXPECTED),
            ]
        );
    }
}
