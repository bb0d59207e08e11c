//! The hash that decides whether a saved record changed: SHA-256 of its
//! canonical JSON (object keys sorted by their bytes, no whitespace, strings
//! and numbers as serde_json writes them), so key order and formatting never
//! count as a change (docs/store.md).
//!
//! A record whose keys are already in order (as a component that writes
//! canonical JSON emits them) is hashed as it is parsed, streaming: no tree
//! of values, no re-serialisation through a sorted map. Only a record with
//! keys out of order is parsed into a tree and sorted; both give the same hash.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// What hashing one record found.
pub struct Hashed {
    pub hash: [u8; 32],
    /// The top-level `id`, if it is a string.
    pub id: Option<String>,
}

/// Why a text could not be hashed.
pub enum HashError {
    /// Not JSON; serde's message, with line and column.
    InvalidJson(String),
    /// JSON, but not an object.
    NotAnObject,
}

/// Hashes the canonical form of `text`, a JSON object.
pub fn hash_record(text: &str) -> Result<Hashed, HashError> {
    let mut hasher = Sha256::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match (TopLevel { hasher: &mut hasher }).deserialize(&mut deserializer).and_then(|id| {
        deserializer.end()?;
        Ok(id)
    }) {
        Ok(id) => Ok(Hashed { hash: hasher.finalize().into(), id }),
        // Keys out of order (or another surprise): the tree way, which also
        // tells apart invalid JSON from JSON that is not an object.
        Err(_) => hash_through_a_tree(text),
    }
}

fn hash_through_a_tree(text: &str) -> Result<Hashed, HashError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| HashError::InvalidJson(e.to_string()))?;
    let object = value.as_object().ok_or(HashError::NotAnObject)?;
    let id = match object.get("id") {
        Some(serde_json::Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    let mut hasher = Sha256::new();
    hash_tree(&value, &mut hasher);
    Ok(Hashed { hash: hasher.finalize().into(), id })
}

fn hash_tree(value: &serde_json::Value, hasher: &mut Sha256) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                write_json(hasher, key.as_str());
                hasher.update(b":");
                hash_tree(item, hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                hash_tree(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => write_json(hasher, scalar),
    }
}

/// Feeds `value` as serde_json writes it.
fn write_json<T: serde::Serialize + ?Sized>(hasher: &mut Sha256, value: &T) {
    serde_json::to_writer(Feed(hasher), value).expect("writing to a hasher cannot fail");
}

/// `io::Write` into a hasher.
struct Feed<'h>(&'h mut Sha256);

impl std::io::Write for Feed<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A key, borrowed from the text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The record itself: an object whose `id` is remembered.
struct TopLevel<'h> {
    hasher: &'h mut Sha256,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_map(ObjectVisitor { hasher: self.hasher, top: true })
    }
}

/// An element of an array: the comma that separates it from the one before
/// is written only once it is known to exist.
struct Element<'h> {
    hasher: &'h mut Sha256,
    comma: bool,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.comma {
            self.hasher.update(b",");
        }
        deserializer.deserialize_any(ValueVisitor { hasher: self.hasher }).map(|_| ())
    }
}

/// Any value, hashed as it is read.
struct Canonical<'h> {
    hasher: &'h mut Sha256,
}

impl<'de> DeserializeSeed<'de> for Canonical<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_any(ValueVisitor { hasher: self.hasher })
    }
}

struct ValueVisitor<'h> {
    hasher: &'h mut Sha256,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    /// A string value, for the caller that wants the `id`.
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        write_json(self.hasher, &v);
        Ok(None)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        write_json(self.hasher, &v);
        Ok(None)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        write_json(self.hasher, &v);
        Ok(None)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As serde_json's tree keeps it: a number, or null if not finite.
        match serde_json::Number::from_f64(v) {
            Some(n) => write_json(self.hasher, &n),
            None => self.hasher.update(b"null"),
        }
        Ok(None)
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        write_json(self.hasher, v);
        Ok(Some(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.hasher.update(b"null");
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.hasher.update(b"[");
        let mut comma = false;
        while seq.next_element_seed(Element { hasher: self.hasher, comma })?.is_some() {
            comma = true;
        }
        self.hasher.update(b"]");
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ObjectVisitor { hasher: self.hasher, top: false }.visit_map(map)
    }
}

struct ObjectVisitor<'h> {
    hasher: &'h mut Sha256,
    top: bool,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.hasher.update(b"{");
        let mut previous: Option<Key<'de>> = None;
        let mut id = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match &previous {
                Some(previous) if previous.0.as_bytes() >= key.0.as_bytes() => {
                    return Err(A::Error::custom("keys out of order"));
                }
                Some(_) => self.hasher.update(b","),
                None => {}
            }
            write_json(self.hasher, key.0.as_ref());
            self.hasher.update(b":");
            let value = map.next_value_seed(Canonical { hasher: self.hasher })?;
            if self.top && key.0 == "id" {
                id = value;
            }
            previous = Some(key);
        }
        self.hasher.update(b"}");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(text: &str) -> [u8; 32] {
        match hash_record(text) {
            Ok(hashed) => hashed.hash,
            Err(_) => panic!("{text} hashes"),
        }
    }

    #[test]
    fn streaming_and_tree_give_the_same_hash() {
        for text in [
            r#"{"a":[true,null,-3,1.5,1e300,{"x":"é\n\u0001"}],"b":{},"c":[],"id":"7"}"#,
            r#"{"id":"1"}"#,
            r#"{"a\"b":1,"a\\b":2,"id":"x"}"#,
            r#"{"n":18446744073709551615,"m":-9223372036854775808,"f":0.1}"#,
        ] {
            let streamed = hash_record(text).ok().unwrap();
            let tree = hash_through_a_tree(text).ok().unwrap();
            assert_eq!(streamed.hash, tree.hash, "{text}");
            assert_eq!(streamed.id, tree.id, "{text}");
        }
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_count() {
        let sorted = hash(r#"{"a":1,"b":[1,{"x":2,"y":"é"}],"id":"1"}"#);
        assert_eq!(hash(r#"{ "id" : "1", "b": [1, {"y": "\u00e9", "x": 2}], "a": 1 }"#), sorted);
        assert_eq!(hash(r#"{"b":[1,{"x":2,"y":"é"}],"a":1,"id":"1"}"#), sorted);
        assert_ne!(hash(r#"{"a":2,"b":[1,{"x":2,"y":"é"}],"id":"1"}"#), sorted, "a value that differs counts");
        assert_ne!(hash(r#"{"a":1,"b":[{"x":2,"y":"é"},1],"id":"1"}"#), sorted, "array order counts");
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_text() {
        let text = r#"{ "z": "é\n", "id": "7", "a": [true, null, -3] }"#;
        let canonical = r#"{"a":[true,null,-3],"id":"7","z":"é\n"}"#;
        assert_eq!(hash(text), <[u8; 32]>::from(Sha256::digest(canonical.as_bytes())));
    }

    #[test]
    fn bad_texts_are_told_apart() {
        assert!(matches!(hash_record("{"), Err(HashError::InvalidJson(m)) if m.contains("line 1")));
        assert!(matches!(hash_record("[1]"), Err(HashError::NotAnObject)));
        assert!(matches!(hash_record(r#"{"id":"1"} x"#), Err(HashError::InvalidJson(_))));
        assert_eq!(hash_record(r#"{"id":7}"#).ok().unwrap().id, None);
    }
}
