//! The shape of an RFC 7591 §2.3 software statement: a JWS whose header names a real
//! algorithm and whose claims carry `iss` (rule 82, vectors E11 and E13).
//!
//! Only the shape is checked here; verifying signatures against trusted issuers needs
//! configured keys and belongs to the software statement verifier.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The decoded header and claims of a well-formed statement.
#[derive(Debug)]
pub struct StatementShape {
    pub algorithm: String,
    pub issuer: String,
}

/// What is wrong with the shape of a software statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the software statement is not a JWT: it needs three dot-separated parts")]
    NotThreeParts,
    #[error("the software statement header is not base64url JSON")]
    Header,
    #[error("the software statement claims are not base64url JSON")]
    Claims,
    #[error("the software statement header has no `alg`")]
    NoAlgorithm,
    #[error("the software statement is unsigned (`alg: none`)")]
    Unsigned,
    #[error("the software statement has no `iss` claim")]
    NoIssuer,
}

/// Checks that `statement` is a compact JWS with a usable header and an `iss` claim.
pub fn check_shape(statement: &str) -> Result<StatementShape, ShapeError> {
    let parts: Vec<&str> = statement.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(ShapeError::NotThreeParts);
    };
    let header = decode_object(header).ok_or(ShapeError::Header)?;
    let claims = decode_object(claims).ok_or(ShapeError::Claims)?;
    let algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(ShapeError::NoAlgorithm)?;
    if algorithm.eq_ignore_ascii_case("none") || signature.is_empty() {
        return Err(ShapeError::Unsigned);
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|issuer| !issuer.is_empty())
        .ok_or(ShapeError::NoIssuer)?;
    Ok(StatementShape {
        algorithm: algorithm.to_owned(),
        issuer: issuer.to_owned(),
    })
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    // A header or claims set that names a member twice is malformed (F-10).
    let text = std::str::from_utf8(&bytes).ok()?;
    if super::json::first_duplicate_member(text).is_some() {
        return None;
    }
    match serde_json::from_str(text).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// One public key of an issuer, with its `kid` when it has one.
type IssuerKey = (Option<String>, jsonwebtoken::DecodingKey);

/// Issuers whose software statements clientgate trusts, with their public keys
/// (configuration `[software_statements]`).
#[derive(Clone, Default)]
pub struct TrustedIssuers {
    keys: Vec<(String, Vec<IssuerKey>)>,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    leeway_secs: u64,
    claims: ClaimRules,
}

/// What a statement's claims must say besides `iss` (F-15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRules {
    /// `software_statements.require_exp` (default true): a statement without `exp` never
    /// expires, so it is refused.
    pub require_exp: bool,
    /// `software_statements.audience`: this AS's name. An `aud` claim, when present, must
    /// name it; with no audience configured a statement that names one is refused, since
    /// it was minted for someone.
    pub audience: Option<String>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            require_exp: true,
            audience: None,
        }
    }
}

impl std::fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self
            .keys
            .iter()
            .map(|(issuer, _)| issuer.as_str())
            .collect();
        f.debug_struct("TrustedIssuers")
            .field("issuers", &issuers)
            .field("algorithms", &self.algorithms)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

/// Algorithms accepted unless configured otherwise: asymmetric only, as RFC 7591 §2.3
/// recommends RS256 and a shared MAC key cannot be trusted across parties.
pub const DEFAULT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Why the trusted issuers of the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("`{0}` is not an asymmetric JWS algorithm")]
    Algorithm(String),
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("issuer `{issuer}`: {problem}")]
    Key { issuer: String, problem: KeyProblem },
}

/// What is wrong with an issuer's key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("not a JWK Set: {0}")]
    JwkSet(serde_json::Error),
    #[error("unusable JWK: {0}")]
    Jwk(jsonwebtoken::errors::Error),
    #[error("not a PEM public key (RSA, EC or Ed25519) nor a JWK Set")]
    Pem,
}

impl TrustedIssuers {
    /// Builds the trust list: each issuer with a PEM public key or a JWK Set, given inline
    /// (text starting with `{` or `-----BEGIN`) or as a file path. `read` reads a file; the
    /// caller owns I/O.
    pub fn build(
        issuers: &[(String, String)],
        algorithms: &[String],
        leeway_secs: u64,
        read: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<TrustedIssuers, IssuerError> {
        let algorithms = algorithms
            .iter()
            .map(|name| {
                name.parse::<jsonwebtoken::Algorithm>()
                    .ok()
                    .filter(|_| !name.starts_with("HS"))
                    .ok_or_else(|| IssuerError::Algorithm(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = Vec::new();
        for (issuer, source) in issuers {
            let inline = source.trim_start();
            let text = if inline.starts_with('{') || inline.starts_with("-----BEGIN") {
                source.clone()
            } else {
                read(source).map_err(|source_error| IssuerError::Read {
                    path: source.clone(),
                    source: source_error,
                })?
            };
            let issuer_keys = decoding_keys(&text).map_err(|problem| IssuerError::Key {
                issuer: issuer.clone(),
                problem,
            })?;
            keys.push((issuer.clone(), issuer_keys));
        }
        Ok(TrustedIssuers {
            keys,
            algorithms,
            leeway_secs,
            claims: ClaimRules::default(),
        })
    }

    /// The trust list with `claims` required of every statement.
    pub fn with_claims(self, claims: ClaimRules) -> TrustedIssuers {
        TrustedIssuers { claims, ..self }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decoding_keys(text: &str) -> Result<Vec<IssuerKey>, KeyProblem> {
    if text.trim_start().starts_with('{') {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(text).map_err(KeyProblem::JwkSet)?;
        return set
            .keys
            .iter()
            .map(|jwk| {
                jsonwebtoken::DecodingKey::from_jwk(jwk)
                    .map(|key| (jwk.common.key_id.clone(), key))
                    .map_err(KeyProblem::Jwk)
            })
            .collect();
    }
    let pem = text.as_bytes();
    jsonwebtoken::DecodingKey::from_rsa_pem(pem)
        .or_else(|_| jsonwebtoken::DecodingKey::from_ec_pem(pem))
        .or_else(|_| jsonwebtoken::DecodingKey::from_ed_pem(pem))
        .map(|key| vec![(None, key)])
        .map_err(|_| KeyProblem::Pem)
}

/// Why the `aud` claim refuses the statement, if it does: present, and not naming the
/// configured audience (a string, or a list that holds it).
fn audience_problem(claims: &Map<String, Value>, rules: &ClaimRules) -> Option<String> {
    let aud = claims.get("aud")?;
    let named: Vec<&str> = match aud {
        Value::String(one) => vec![one.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Some("the `aud` claim is neither a string nor a list of strings".to_owned()),
    };
    match &rules.audience {
        Some(audience) if named.contains(&audience.as_str()) => None,
        Some(audience) => Some(format!(
            "the statement is for another audience (`aud` does not name `{audience}`)"
        )),
        None => Some(
            "the statement names an audience (`aud`) and software_statements.audience is not set, \
             so it cannot be shown to be for this server"
                .to_owned(),
        ),
    }
}

/// What verifying a statement found (rule 82; vectors E11–E14).
#[derive(Clone, Debug, PartialEq)]
pub enum StatementCheck {
    /// Signed by a trusted issuer and current: its claims override the plain metadata.
    Verified {
        issuer: String,
        claims: Map<String, Value>,
    },
    /// Well-formed, but from an issuer this server does not trust: `unapproved_software_statement`.
    Untrusted(String),
    /// Not a usable statement (bad signature, algorithm, time claims): `invalid_software_statement`.
    Invalid(String),
}

/// Verifies `statement` against the trusted issuers at `now_secs`. The shape must already
/// have been checked with [`check_shape`].
pub fn verify(statement: &str, trusted: &TrustedIssuers, now_secs: u64) -> StatementCheck {
    let shape = match check_shape(statement) {
        Ok(shape) => shape,
        Err(problem) => return StatementCheck::Invalid(problem.to_string()),
    };
    let Some((_, keys)) = trusted
        .keys
        .iter()
        .find(|(issuer, _)| *issuer == shape.issuer)
    else {
        return StatementCheck::Untrusted(format!(
            "software statements from `{}` are not trusted here",
            shape.issuer
        ));
    };
    let header = match jsonwebtoken::decode_header(statement) {
        Ok(header) => header,
        Err(error) => return StatementCheck::Invalid(format!("unreadable header: {error}")),
    };
    if !trusted.algorithms.contains(&header.alg) {
        return StatementCheck::Invalid(format!(
            "algorithm `{:?}` is not allowed for software statements",
            header.alg
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = trusted.leeway_secs;
    if trusted.claims.require_exp {
        validation.set_required_spec_claims(&["iss", "exp"]);
    } else {
        validation.set_required_spec_claims(&["iss"]);
    }
    validation.set_issuer(&[shape.issuer.as_str()]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    let mut last_error = String::from("no key of the issuer matches");
    for (kid, key) in keys {
        if header.kid.is_some() && kid.is_some() && header.kid != *kid {
            continue;
        }
        match jsonwebtoken::decode::<Map<String, Value>>(statement, key, &validation) {
            Ok(data) => {
                let issued_in_future = data
                    .claims
                    .get("iat")
                    .and_then(Value::as_u64)
                    .is_some_and(|iat| iat > now_secs + trusted.leeway_secs);
                if issued_in_future {
                    return StatementCheck::Invalid(
                        "the statement is issued in the future (`iat`)".to_owned(),
                    );
                }
                if let Some(problem) = audience_problem(&data.claims, &trusted.claims) {
                    return StatementCheck::Invalid(problem);
                }
                return StatementCheck::Verified {
                    issuer: shape.issuer,
                    claims: data.claims,
                };
            }
            Err(error) => last_error = error.to_string(),
        }
    }
    StatementCheck::Invalid(format!(
        "the statement from `{}` does not verify: {last_error}",
        shape.issuer
    ))
}
