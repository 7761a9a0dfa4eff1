//! The registry of known MCP clients (`policies/known-clients.toml`): who publishes each
//! client and how it registers — its CIMD URLs (exact, or a pattern with constrained
//! segments) and its DCR signature (redirect URI patterns, the grant types it asks for) —
//! so that policies can name a client and spot a registration that only borrows its name.
//!
//! Pure: the file's text in, a validated registry out; a registration's facts in, the
//! client it is (or claims to be) out. `policy` loads it with the policies and turns it into
//! `KnownClient` entities.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::registration::names::skeleton;

/// The file in a policy directory that holds the registry.
pub const FILE: &str = "known-clients.toml";

/// What a placeholder matches when the entry does not constrain it: `{port}` a port number,
/// any other name one path segment of URL-safe characters.
const DEFAULT_SEGMENT: &str = "^[A-Za-z0-9._~-]{1,128}$";
const PORT: &str = "^[0-9]{1,5}$";

/// One known client, as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    id: String,
    name: String,
    #[serde(default)]
    also_named: Vec<String>,
    publisher: String,
    publisher_domain: String,
    /// Its redirects go to the user's machine (or a private-use scheme): a public native
    /// client that anyone can run, so recognizing it proves less.
    #[serde(default)]
    native: bool,
    #[serde(default)]
    cimd: Vec<String>,
    #[serde(default)]
    dcr_redirect_uris: Vec<String>,
    /// The grant types a DCR registration of it asks for at most.
    #[serde(default)]
    grant_types: Vec<String>,
    /// Constraints of the `{name}` placeholders in its URLs, as regular expressions.
    #[serde(default)]
    segments: BTreeMap<String, String>,
    /// Documents pinned by the operator, for publishers whose servers refuse data-centre
    /// fetches.
    #[serde(default)]
    pin: Vec<WrittenPin>,
    source: String,
    checked: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenPin {
    client_id: String,
    document: Option<String>,
    sha256: Option<String>,
}

/// A CIMD document the operator pinned for one client_id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// These bytes are the document: used without a fetch.
    Document(Vec<u8>),
    /// The document is fetched as usual, and must have this SHA-256 (hex).
    Sha256(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    client: Vec<Written>,
}

/// A URL with `{name}` placeholders, each matching one constrained segment.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    /// Literal text and placeholders, in order.
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Segment { name: String, rule: regex::Regex },
}

impl Pattern {
    fn parse(text: &str, segments: &BTreeMap<String, String>) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|close| open + close)
                .ok_or_else(|| format!("`{text}`: a `{{` without its `}}`"))?;
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{text}`: `{{{name}}}` is not a placeholder name"));
            }
            if matches!(parts.last(), Some(Part::Segment { .. })) {
                return Err(format!("`{text}`: two placeholders in a row"));
            }
            let rule = match segments.get(name) {
                Some(rule) => rule.as_str(),
                None if name == "port" => PORT,
                None => DEFAULT_SEGMENT,
            };
            let rule = regex::Regex::new(rule)
                .map_err(|error| format!("`{text}`: the rule of `{{{name}}}`: {error}"))?;
            parts.push(Part::Segment {
                name: name.to_owned(),
                rule,
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Pattern {
            text: text.to_owned(),
            parts,
        })
    }

    /// Whether `candidate` is this pattern with each placeholder filled by one segment its
    /// rule accepts. A segment never holds `/`, `?`, `#`, `%` or `\`, and is never `.` or `..`.
    pub fn matches(&self, candidate: &str) -> bool {
        let mut rest = candidate;
        let mut parts = self.parts.iter().peekable();
        while let Some(part) = parts.next() {
            match part {
                Part::Literal(literal) => {
                    let Some(after) = rest.strip_prefix(literal.as_str()) else {
                        return false;
                    };
                    rest = after;
                }
                Part::Segment { rule, .. } => {
                    let end = match parts.peek() {
                        Some(Part::Literal(next)) => match rest.find(next.as_str()) {
                            Some(end) => end,
                            None => return false,
                        },
                        _ => rest.len(),
                    };
                    let segment = &rest[..end];
                    let unsafe_segment = segment.is_empty()
                        || segment == "."
                        || segment == ".."
                        || segment.contains(['/', '?', '#', '%', '\\']);
                    if unsafe_segment || !rule.is_match(segment) {
                        return false;
                    }
                    rest = &rest[end..];
                }
            }
        }
        rest.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Segment { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }
}

/// One known client, validated.
#[derive(Clone, Debug)]
pub struct KnownClient {
    pub id: String,
    pub name: String,
    pub also_named: Vec<String>,
    pub publisher: String,
    pub publisher_domain: String,
    pub native: bool,
    pub cimd: Vec<Pattern>,
    pub dcr_redirect_uris: Vec<Pattern>,
    pub grant_types: Vec<String>,
    /// Pinned documents by exact client_id.
    pub pins: Vec<(String, Pin)>,
    pub source: String,
    pub checked: String,
    /// The folded forms of `name` and `also_named` (what a claim is compared with),
    /// computed when the registry is read.
    skeletons: Vec<String>,
}

/// What a registration's `client_name` claims, folded once per decision: the whole name
/// and its base before a parenthesised or dashed suffix ("Claude Code (my server)").
pub struct Claim([String; 2]);

impl Claim {
    pub fn of(client_name: &str) -> Claim {
        let base = client_name
            .split(['(', '[', '|'])
            .next()
            .unwrap_or_default()
            .split(" - ")
            .next()
            .unwrap_or_default();
        Claim([skeleton(client_name), skeleton(base)])
    }
}

impl KnownClient {
    /// How it registers: `cimd`, `dcr`, or both.
    pub fn registers(&self) -> Vec<&'static str> {
        let mut ways = Vec::new();
        if !self.cimd.is_empty() {
            ways.push("cimd");
        }
        if !self.dcr_redirect_uris.is_empty() {
            ways.push("dcr");
        }
        ways
    }

    /// Whether `client_id` is one of its CIMD URLs.
    pub fn is_cimd_client_id(&self, client_id: &str) -> bool {
        self.cimd.iter().any(|pattern| pattern.matches(client_id))
    }

    /// Whether a DCR registration with these redirect URIs and grant types has its
    /// signature: at least one redirect URI, each matching one of its patterns, and no grant
    /// type beyond those it asks for.
    pub fn has_dcr_signature(&self, redirect_uris: &[String], grant_types: &[String]) -> bool {
        !self.dcr_redirect_uris.is_empty()
            && !redirect_uris.is_empty()
            && redirect_uris
                .iter()
                .all(|uri| self.dcr_redirect_uris.iter().any(|p| p.matches(uri)))
            && (self.grant_types.is_empty()
                || grant_types.iter().all(|g| self.grant_types.contains(g)))
    }

    /// Whether `client_name` says it is this client: its name or another it goes by, with
    /// case, spacing, punctuation and look-alike characters folded, alone or followed by a
    /// parenthesised or dashed suffix ("Claude Code (my server)").
    pub fn is_claimed_by(&self, client_name: &str) -> bool {
        self.is_claimed(&Claim::of(client_name))
    }

    /// [`KnownClient::is_claimed_by`] with the claim folded already.
    pub fn is_claimed(&self, claim: &Claim) -> bool {
        self.skeletons.iter().any(|known| claim.0.contains(known))
    }
}

/// The facts of a registration that recognition looks at.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    /// The CIMD client_id; `None` for DCR.
    pub client_id: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub redirect_uris: &'a [String],
    pub grant_types: &'a [String],
}

/// What the registry makes of one registration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recognition {
    /// The known client it is: its CIMD URL, or its DCR signature.
    pub known_client: Option<String>,
    /// The known client whose name it claims while matching none of the signatures of the
    /// clients that go by that name.
    pub impersonates: Option<String>,
}

/// The validated registry.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub clients: Vec<KnownClient>,
}

impl Registry {
    /// Parses and validates the registry file's text; every problem is reported, each with
    /// the entry it concerns.
    pub fn parse(text: &str) -> Result<Registry, Vec<String>> {
        let file: File = toml::from_str(text).map_err(|error| vec![error.to_string()])?;
        let mut problems = Vec::new();
        let mut clients: Vec<KnownClient> = Vec::new();
        for written in file.client {
            let id = written.id.clone();
            let mut problem = |message: String| problems.push(format!("client `{id}`: {message}"));
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                problem("an id is lower-case letters, digits and `-`".to_owned());
            }
            if clients.iter().any(|client| client.id == written.id) {
                problem("is listed twice".to_owned());
            }
            if written.cimd.is_empty() && written.dcr_redirect_uris.is_empty() {
                problem(
                    "says neither `cimd` nor `dcr_redirect_uris`: it cannot be recognized"
                        .to_owned(),
                );
            }
            if written.source.trim().is_empty() || written.checked.trim().is_empty() {
                problem("every entry says its `source` and the date it was `checked`".to_owned());
            }
            let mut patterns = |list: &[String], https_only: bool| -> Vec<Pattern> {
                list.iter()
                    .filter_map(|text| {
                        if https_only && !text.starts_with("https://") {
                            problem(format!("CIMD URL `{text}` is not https"));
                            return None;
                        }
                        Pattern::parse(text, &written.segments)
                            .map_err(&mut problem)
                            .ok()
                    })
                    .collect()
            };
            let cimd = patterns(&written.cimd, true);
            let dcr_redirect_uris = patterns(&written.dcr_redirect_uris, false);
            let mut pins = Vec::new();
            for pin in &written.pin {
                let pinned = match (&pin.document, &pin.sha256) {
                    (Some(document), None) => Some(Pin::Document(document.clone().into_bytes())),
                    (None, Some(sha256))
                        if sha256.len() == 64
                            && sha256
                                .chars()
                                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) =>
                    {
                        Some(Pin::Sha256(sha256.clone()))
                    }
                    (None, Some(sha256)) => {
                        problem(format!(
                            "pin `{}`: `{sha256}` is not a lower-case hex SHA-256",
                            pin.client_id
                        ));
                        None
                    }
                    _ => {
                        problem(format!(
                            "pin `{}`: give its `document` or its `sha256`, one of them",
                            pin.client_id
                        ));
                        None
                    }
                };
                if !cimd.iter().any(|pattern| pattern.matches(&pin.client_id)) {
                    problem(format!(
                        "pin `{}` is none of the client's CIMD URLs",
                        pin.client_id
                    ));
                }
                if let Some(pinned) = pinned {
                    pins.push((pin.client_id.clone(), pinned));
                }
            }
            for name in written.segments.keys() {
                let used = cimd
                    .iter()
                    .chain(&dcr_redirect_uris)
                    .any(|pattern| pattern.placeholders().any(|p| p == name));
                if !used {
                    problems.push(format!(
                        "client `{id}`: the segment rule `{name}` is used by no URL"
                    ));
                }
            }
            let skeletons = std::iter::once(&written.name)
                .chain(&written.also_named)
                .map(|name| skeleton(name))
                .filter(|folded| !folded.is_empty())
                .collect();
            clients.push(KnownClient {
                id: written.id,
                name: written.name,
                also_named: written.also_named,
                publisher: written.publisher,
                publisher_domain: written.publisher_domain,
                native: written.native,
                cimd,
                dcr_redirect_uris,
                grant_types: written.grant_types,
                pins,
                source: written.source,
                checked: written.checked,
                skeletons,
            });
        }
        if problems.is_empty() {
            Ok(Registry { clients })
        } else {
            Err(problems)
        }
    }

    /// The document pinned for exactly this client_id, if any.
    pub fn pin(&self, client_id: &str) -> Option<&Pin> {
        self.clients
            .iter()
            .flat_map(|client| &client.pins)
            .find(|(pinned, _)| pinned == client_id)
            .map(|(_, pin)| pin)
    }

    pub fn get(&self, id: &str) -> Option<&KnownClient> {
        self.clients.iter().find(|client| client.id == id)
    }

    /// Which known client a registration is — a CIMD client_id that is one of its URLs; a
    /// DCR registration with its signature and its name — and whether the registration
    /// borrows the name of one it is not.
    pub fn recognize(&self, presented: &Presented<'_>) -> Recognition {
        let claimed: Vec<&KnownClient> = presented
            .client_name
            .map(|name| {
                let claim = Claim::of(name);
                self.clients
                    .iter()
                    .filter(|client| client.is_claimed(&claim))
                    .collect()
            })
            .unwrap_or_default();
        let matching: Vec<&KnownClient> = self
            .clients
            .iter()
            .filter(|client| match presented.client_id {
                Some(client_id) => client.is_cimd_client_id(client_id),
                None => client.has_dcr_signature(presented.redirect_uris, presented.grant_types),
            })
            .collect();
        // A CIMD client_id is the URL its document was fetched from: it alone says which
        // client this is. A DCR body is the client's own claim, and loopback callbacks look
        // alike across clients: the signature must match and the name must say so.
        let known = match presented.client_id {
            Some(_) => matching.first(),
            None => matching
                .iter()
                .find(|client| claimed.iter().any(|c| c.id == client.id)),
        };
        let impersonates = match known {
            Some(known) if claimed.iter().any(|c| c.id == known.id) => None,
            _ => claimed.first().map(|client| client.id.clone()),
        };
        Recognition {
            known_client: known.map(|client| client.id.clone()),
            impersonates,
        }
    }
}

#[cfg(test)]
mod tests;
