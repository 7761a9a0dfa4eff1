//! JSON as registrations must spell it: each member named once (F-10). `serde_json` keeps
//! the last of two members with the same name, while another parser — the AS's, re-reading
//! the body — may keep the first; a registration that says two things must not be approved
//! for the one clientgate happened to read.

use std::borrow::Cow;
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
        place: &Place::Root,
        found: &found,
    };
    walk.deserialize(&mut deserializer).ok()?;
    found.into_inner()
}

/// Where a value is in the document. Spelled out only for the duplicate found: the walk
/// allocates no path per member.
enum Place<'p> {
    Root,
    Member(&'p Place<'p>, &'p str),
    Element(&'p Place<'p>, usize),
}

impl Place<'_> {
    fn spell(&self, path: &mut String) {
        match self {
            Place::Root => {}
            Place::Member(parent, name) => {
                parent.spell(path);
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
            }
            Place::Element(parent, index) => {
                parent.spell(path);
                path.push_str(&format!("[{index}]"));
            }
        }
    }
}

struct Walk<'p, 'f> {
    place: &'p Place<'p>,
    found: &'f RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// A member name, borrowed from the document unless it holds escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key_seed(Name)? {
            let place = Place::Member(self.place, &name);
            if seen.contains(&name) && self.found.borrow().is_none() {
                let mut path = String::new();
                place.spell(&mut path);
                *self.found.borrow_mut() = Some(path);
            }
            map.next_value_seed(Walk {
                place: &place,
                found: self.found,
            })?;
            seen.insert(name);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let place = Place::Element(self.place, index);
            let walk = Walk {
                place: &place,
                found: self.found,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
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
        assert_eq!(
            first_duplicate_member(r#"{"a":[1,{"b":{"c\u0064":1,"cd":2}}]}"#).as_deref(),
            Some("a[1].b.cd"),
            "an escaped name is the name it spells"
        );
        assert_eq!(first_duplicate_member("not json"), None);
    }
}
