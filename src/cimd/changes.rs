//! What changed in a client's metadata document since a tenant approved it (CIMD -02 §8.4,
//! §8.4.1): the members whose change can invalidate a user's consent or the keys the AS
//! authenticates the client with. Pure: snapshots of the watched members in, names out.

use serde_json::Value;

use crate::registration::ClientMetadata;

/// The members a change of which is reported, in this order.
pub const WATCHED: &[&str] = &[
    "redirect_uris",
    "jwks",
    "jwks_uri",
    "token_endpoint_auth_method",
    "token_endpoint_auth_methods_supported",
    "client_name",
    "logo_uri",
];

/// The [`WATCHED`] members of `metadata` as a JSON object: what a tenant's approval of a
/// document is remembered by.
pub fn snapshot(metadata: &ClientMetadata) -> Vec<u8> {
    let Ok(Value::Object(all)) = serde_json::to_value(metadata) else {
        return b"{}".to_vec();
    };
    let watched: serde_json::Map<String, Value> = all
        .into_iter()
        .filter(|(member, _)| WATCHED.contains(&member.as_str()))
        .collect();
    serde_json::to_vec(&watched).unwrap_or_else(|_| b"{}".to_vec())
}

/// The [`WATCHED`] members whose values differ between `before` and `after` (a member
/// added or removed counts). Documents that are not JSON objects compare as empty.
pub fn changed_members(before: &[u8], after: &[u8]) -> Vec<String> {
    let parse = |body: &[u8]| match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (parse(before), parse(after));
    WATCHED
        .iter()
        .filter(|member| before.get(**member) != after.get(**member))
        .map(|member| (*member).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_redirect_uri_and_a_new_key_set_are_reported_and_nothing_else() {
        let before = br#"{"client_id":"https://a.example/c.json","client_name":"A","redirect_uris":["https://a.example/cb"],"jwks_uri":"https://a.example/jwks","tos_uri":"https://a.example/tos"}"#;
        let after = br#"{"client_id":"https://a.example/c.json","client_name":"A","redirect_uris":["https://a.example/cb","https://evil.example/cb"],"jwks_uri":"https://a.example/jwks2","tos_uri":"https://a.example/terms"}"#;
        assert_eq!(
            changed_members(before, after),
            ["redirect_uris", "jwks_uri"]
        );
    }

    #[test]
    fn a_member_added_or_removed_is_a_change() {
        let before = br#"{"client_name":"A","logo_uri":"https://a.example/l.png"}"#;
        let after = br#"{"client_name":"B","jwks":{"keys":[]}}"#;
        assert_eq!(
            changed_members(before, after),
            ["jwks", "client_name", "logo_uri"]
        );
    }

    #[test]
    fn a_snapshot_holds_the_watched_members_only() {
        let metadata = ClientMetadata {
            redirect_uris: vec!["https://a.example/cb".to_owned()],
            client_name: Some("A".to_owned()),
            tos_uri: Some("https://a.example/tos".to_owned()),
            token_endpoint_auth_method: "none".to_owned(),
            ..ClientMetadata::default()
        };
        let snapshot: Value = serde_json::from_slice(&snapshot(&metadata)).unwrap();
        assert_eq!(
            snapshot,
            serde_json::json!({
                "redirect_uris": ["https://a.example/cb"],
                "client_name": "A",
                "token_endpoint_auth_method": "none"
            })
        );
        let renamed = ClientMetadata {
            client_name: Some("B".to_owned()),
            ..metadata.clone()
        };
        assert_eq!(
            changed_members(&super::snapshot(&metadata), &super::snapshot(&renamed)),
            ["client_name"]
        );
    }

    #[test]
    fn the_same_members_in_another_order_or_spacing_are_no_change() {
        let before = br#"{"redirect_uris":["https://a.example/cb"],"client_name":"A"}"#;
        let after = br#"{ "client_name" : "A", "redirect_uris" : [ "https://a.example/cb" ] }"#;
        assert!(changed_members(before, after).is_empty());
    }
}
