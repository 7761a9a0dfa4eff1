//! JSON as registrations must spell it: each member named once (F-10). `serde_json` keeps
//! the last of two members with the same name, while another parser — the AS's, re-reading
//! the body — may keep the first; a registration that says two things must not be approved
//! for the one clientgate happened to read.

use std::cell::RefCell;
use std::collections::HashSet;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The path of the first member `text` names twice in one object (`redirect_uris`,
/// `jwks.keys[0].kid`), or `None` when every object names each member once — or when
/// `text` is not JSON at all, which the parse that follows reports.
pub fn first_duplicate_member(text: &str) -> Option<String> {
    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let walk = Walk {
        path: String::new(),
        found: &found,
    };
    walk.deserialize(&mut deserializer).ok()?;
    found.into_inner()
}

struct Walk<'a> {
    path: String,
    found: &'a RefCell<Option<String>>,
}

impl Walk<'_> {
    fn at(&self, path: String) -> Walk<'_> {
        Walk {
            path,
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                name.clone()
            } else {
                format!("{}.{name}", self.path)
            };
            if !seen.insert(name) && self.found.borrow().is_none() {
                *self.found.borrow_mut() = Some(path.clone());
            }
            map.next_value_seed(self.at(path))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(self.at(format!("{}[{index}]", self.path)))?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_member_named_twice_is_found_with_its_path() {
        assert_eq!(
            first_duplicate_member(
                r#"{"client_name":"dup","redirect_uris":["https://evil.example/cb"],"redirect_uris":["https://app.example.com/cb"]}"#
            )
            .as_deref(),
            Some("redirect_uris")
        );
        assert_eq!(
            first_duplicate_member(r#"{"jwks":{"keys":[{"kid":"a","kid":"b"}]}}"#).as_deref(),
            Some("jwks.keys[0].kid")
        );
        assert_eq!(
            first_duplicate_member(r#"{"a":{"x":1},"b":{"x":2},"c":[{"x":1},{"x":2}]}"#),
            None,
            "the same name in different objects is fine"
        );
        assert_eq!(first_duplicate_member("not json"), None);
    }
}
