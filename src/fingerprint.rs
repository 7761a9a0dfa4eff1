//! The registration fingerprint: a stable hash that equal registrations share.
//!
//! It covers the registration type, the CIMD client_id, the redirect URIs (sorted, without
//! repeats, compared as exact strings), `client_name`, `software_id` and `software_version`;
//! not `application_type`, which a client may change when it retries (MCP SEP-837).
//! Two registrations with the same fingerprint would register the same client.

use sha2::{Digest, Sha256};

use crate::registration::ClientMetadata;
use crate::vocab::RegistrationType;

/// Hex SHA-256 (first 16 bytes) of the fingerprinted members, each length-prefixed so that
/// no two different registrations can produce the same input.
pub fn fingerprint(
    registration_type: RegistrationType,
    client_id: Option<&str>,
    metadata: &ClientMetadata,
) -> String {
    let mut redirect_uris: Vec<&str> = metadata.redirect_uris.iter().map(String::as_str).collect();
    redirect_uris.sort_unstable();
    redirect_uris.dedup();
    let mut hasher = Sha256::new();
    let mut field = |value: &str| {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    };
    field(registration_type.as_str());
    field(client_id.unwrap_or_default());
    field(&redirect_uris.len().to_string());
    for uri in redirect_uris {
        field(uri);
    }
    field(metadata.client_name.as_deref().unwrap_or_default());
    field(metadata.software_id.as_deref().unwrap_or_default());
    field(metadata.software_version.as_deref().unwrap_or_default());
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(redirects: &[&str], name: &str) -> ClientMetadata {
        ClientMetadata {
            redirect_uris: redirects.iter().map(|uri| uri.to_string()).collect(),
            client_name: Some(name.to_owned()),
            ..ClientMetadata::default()
        }
    }

    #[test]
    fn redirect_uri_order_and_repeats_do_not_change_the_fingerprint() {
        let a = fingerprint(
            RegistrationType::Dcr,
            None,
            &metadata(&["https://a/cb", "https://b/cb"], "C"),
        );
        let b = fingerprint(
            RegistrationType::Dcr,
            None,
            &metadata(&["https://b/cb", "https://a/cb", "https://a/cb"], "C"),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn a_client_retrying_with_another_application_type_is_the_same_registration() {
        // SEP-837: MCP clients MAY retry a refused `native` registration as `web`.
        let native = ClientMetadata {
            application_type: Some("native".to_owned()),
            ..metadata(&["http://127.0.0.1/cb"], "C")
        };
        let web = ClientMetadata {
            application_type: Some("web".to_owned()),
            ..native.clone()
        };
        assert_eq!(
            fingerprint(RegistrationType::Dcr, None, &native),
            fingerprint(RegistrationType::Dcr, None, &web)
        );
    }

    #[test]
    fn a_different_name_or_redirect_gives_a_different_fingerprint() {
        let base = fingerprint(
            RegistrationType::Dcr,
            None,
            &metadata(&["https://a/cb"], "C"),
        );
        let renamed = fingerprint(
            RegistrationType::Dcr,
            None,
            &metadata(&["https://a/cb"], "D"),
        );
        let moved = fingerprint(
            RegistrationType::Dcr,
            None,
            &metadata(&["https://a/cb/"], "C"),
        );
        assert_ne!(base, renamed);
        assert_ne!(base, moved);
    }
}
