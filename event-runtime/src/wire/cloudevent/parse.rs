//! The envelope's reader: one pass over the JSON that keeps `data` as raw text, takes the known
//! attributes into their slots, and reads Dapr's string-or-JSON forms without panicking.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use axum::body::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Reads one string member of a JSON object, skipping the others without allocating.
pub(super) struct StrMember<'n>(pub(super) &'n str);

impl<'de> serde::de::DeserializeSeed<'de> for StrMember<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StrMember<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == self.0 {
                found = map
                    .next_value::<Option<Cow<'de, str>>>()
                    .ok()
                    .flatten()
                    .map(Cow::into_owned);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The attributes the envelope names, read into their own slots rather than a map.
pub(super) const KNOWN: [&str; 10] = [
    "specversion",
    "id",
    "type",
    "source",
    "time",
    "datacontenttype",
    "topic",
    "pubsubname",
    "traceparent",
    "tracestate",
];

/// The [`KNOWN`] attributes that were strings (any other value counts as absent).
#[derive(Default)]
pub(super) struct Known(pub(super) [Option<String>; KNOWN.len()]);

impl Known {
    pub(super) fn from_map(map: &mut Map<String, Value>) -> Known {
        let mut known = Known::default();
        for (slot, name) in known.0.iter_mut().zip(KNOWN) {
            if let Some(Value::String(s)) = map.remove(name) {
                *slot = Some(s);
            }
        }
        known
    }
}

/// The slot of a [`KNOWN`] attribute.
#[cfg(test)]
pub(super) fn known_index(name: &str) -> Option<usize> {
    match Key::named(name) {
        Some(Key::Known(i)) => Some(i),
        _ => None,
    }
}

/// Where the data was found while reading the envelope.
pub(super) enum WireData {
    Raw(Box<RawValue>),
    /// Decoded straight into the handler's type; its text stays in this body.
    Read(Bytes),
    Value(Value),
    Base64(Value),
    None,
}

/// The envelope as read from the wire: `data` as `T` (its raw text, or the handler's type),
/// every other member in [`Members`].
pub(super) struct Wire<T> {
    pub(super) members: Members,
    pub(super) data: Option<T>,
}

/// The envelope's members other than `data`: the known attributes in their slots, the others as
/// JSON, and `data_base64`.
#[derive(Default)]
pub(super) struct Members {
    pub(super) known: Known,
    pub(super) attributes: Map<String, Value>,
    pub(super) base64: Option<Value>,
}

impl Wire<Box<RawValue>> {
    pub(super) fn data(self) -> (Known, Map<String, Value>, WireData) {
        let Members {
            known,
            attributes,
            base64,
        } = self.members;
        let data = match (base64, self.data) {
            (Some(b64), _) => WireData::Base64(b64),
            (None, Some(raw)) => WireData::Raw(raw),
            (None, None) => WireData::None,
        };
        (known, attributes, data)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Wire<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WireVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for WireVisitor<T> {
            type Value = Wire<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvent object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<T>, A::Error> {
                let mut data = None;
                let members = Members::read(&mut map, &mut |map| {
                    data = Some(map.next_value()?);
                    Ok(())
                })?;
                Ok(Wire { members, data })
            }
        }

        deserializer.deserialize_map(WireVisitor(PhantomData))
    }
}

impl Members {
    /// Reads every member of the envelope, handing `data`'s value to `read_data`. Generic over
    /// the map only, not over the type `data` is read as: every envelope reader of one
    /// deserializer shares this copy, and only `read_data` is compiled per event type.
    fn read<'de, A: MapAccess<'de>>(
        map: &mut A,
        read_data: &mut dyn FnMut(&mut A) -> Result<(), A::Error>,
    ) -> Result<Members, A::Error> {
        let mut members = Members::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Data => read_data(map)?,
                Key::Base64 => members.base64 = Some(map.next_value()?),
                Key::Known(i) => members.known.0[i] = map.next_value::<KnownStr>()?.0,
                Key::Other(name) => {
                    let value = map.next_value()?;
                    members.attributes.insert(name, value);
                }
            }
        }
        Ok(members)
    }
}

/// A member name of the envelope, told apart without allocating (only other attributes' names
/// are kept as strings).
pub(super) enum Key {
    Data,
    Base64,
    Known(usize),
    Other(String),
}

impl Key {
    /// The key of `name`, unless it is another attribute's: one `match` (which the compiler
    /// turns into a switch on the length), since every member of every envelope passes here.
    fn named(name: &str) -> Option<Key> {
        let i = match name {
            "data" => return Some(Key::Data),
            "data_base64" => return Some(Key::Base64),
            "specversion" => 0,
            "id" => 1,
            "type" => 2,
            "source" => 3,
            "time" => 4,
            "datacontenttype" => 5,
            "topic" => 6,
            "pubsubname" => 7,
            "traceparent" => 8,
            "tracestate" => 9,
            _ => return None,
        };
        debug_assert_eq!(KNOWN[i], name);
        Some(Key::Known(i))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an attribute name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(Key::named(name).unwrap_or_else(|| Key::Other(name.to_owned())))
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A known attribute's value: the string, or `None` for any other JSON value (which counts as
/// absent), read without building a JSON tree for it.
pub(super) struct KnownStr(Option<String>);

impl<'de> Deserialize<'de> for KnownStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = StrValue { as_value: false }.deserialize(deserializer)?;
        Ok(KnownStr(value.map(Cow::into_owned)))
    }
}

/// A member's value when it is a string, borrowed from the body unless an escape forced a copy;
/// `None` for any other JSON value. That other value is skipped without building a JSON tree (as
/// [`KnownStr`] reads), or, `as_value`, read as a whole [`Value`] (as [`Wire`] reads
/// `data_base64`), so that it fails on what a `Value` fails on.
#[derive(Clone, Copy)]
pub(super) struct StrValue {
    pub(super) as_value: bool,
}

impl<'de> DeserializeSeed<'de> for StrValue {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrValue {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if self.as_value {
            Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|_| None)
        } else {
            serde::de::IgnoredAny.visit_map(map).map(|_| None)
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.as_value {
            Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(|_| None)
        } else {
            serde::de::IgnoredAny.visit_seq(seq).map(|_| None)
        }
    }
}
