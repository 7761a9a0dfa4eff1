//! What changed in a client's metadata document between two fetches (CIMD -02 §8.4,
//! §8.4.1): the members whose change can invalidate a user's consent or the keys the AS
//! authenticates the client with. Pure: two documents' bytes in, member names out.

use serde_json::Value;

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
    fn the_same_members_in_another_order_or_spacing_are_no_change() {
        let before = br#"{"redirect_uris":["https://a.example/cb"],"client_name":"A"}"#;
        let after = br#"{ "client_name" : "A", "redirect_uris" : [ "https://a.example/cb" ] }"#;
        assert!(changed_members(before, after).is_empty());
    }
}
