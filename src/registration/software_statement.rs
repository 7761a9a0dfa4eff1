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

/// Checks that `statement` is a compact JWS with a usable header and an `iss` claim.
pub fn check_shape(statement: &str) -> Result<StatementShape, String> {
    let parts: Vec<&str> = statement.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(
            "the software statement is not a JWT: it needs three dot-separated parts".into(),
        );
    };
    let header =
        decode_object(header).ok_or("the software statement header is not base64url JSON")?;
    let claims =
        decode_object(claims).ok_or("the software statement claims are not base64url JSON")?;
    let algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("the software statement header has no `alg`")?;
    if algorithm.eq_ignore_ascii_case("none") || signature.is_empty() {
        return Err("the software statement is unsigned (`alg: none`)".into());
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|issuer| !issuer.is_empty())
        .ok_or("the software statement has no `iss` claim")?;
    Ok(StatementShape {
        algorithm: algorithm.to_owned(),
        issuer: issuer.to_owned(),
    })
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}
