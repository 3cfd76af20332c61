//! Lists a struct's serde field names, so the documented variable table can be checked
//! against [`crate::Settings`] without repeating the field list by hand.

use serde::de::{self, Deserializer, Visitor};

struct Capture<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for Capture<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only structs are inspected"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The field names serde uses for `T` (empty if `T` is not a struct).
pub fn field_names<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let mut captured = None;
    let _ = T::deserialize(Capture(&mut captured));
    captured.unwrap_or(&[])
}
