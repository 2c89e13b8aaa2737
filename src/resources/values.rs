//! Helpers shared by resources and data sources for tf-provider's `Value<T>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tf_provider::value::Value;

use crate::lifecycle::image::Image;

/// A config value after the unknown check: known (possibly null) or unknown.
pub enum Known<T> {
    Yes(T),
    Unknown,
}

pub fn string_list(v: &Value<Vec<Value<String>>>) -> Known<Vec<String>> {
    match v {
        Value::Unknown => Known::Unknown,
        Value::Null => Known::Yes(Vec::new()),
        Value::Value(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match i {
                    Value::Value(s) => out.push(s.clone()),
                    Value::Null => {}
                    Value::Unknown => return Known::Unknown,
                }
            }
            Known::Yes(out)
        }
    }
}

pub fn string_map(v: &Value<BTreeMap<String, Value<String>>>) -> Known<BTreeMap<String, String>> {
    match v {
        Value::Unknown => Known::Unknown,
        Value::Null => Known::Yes(BTreeMap::new()),
        Value::Value(items) => {
            let mut out = BTreeMap::new();
            for (k, i) in items {
                match i {
                    Value::Value(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    Value::Null => {}
                    Value::Unknown => return Known::Unknown,
                }
            }
            Known::Yes(out)
        }
    }
}

pub fn to_value_list(v: &[String]) -> Value<Vec<Value<String>>> {
    Value::Value(v.iter().cloned().map(Value::Value).collect())
}

pub fn to_value_map(m: &BTreeMap<String, String>) -> Value<BTreeMap<String, Value<String>>> {
    Value::Value(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::Value(v.clone())))
            .collect(),
    )
}

/// One entry of `images`, as both the resource and `golden_images` expose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub name: Value<String>,
    pub image_id: Value<String>,
    pub status: Value<String>,
    pub build_date: Value<String>,
    pub build_number: Value<i64>,
    pub recipe_hash: Value<String>,
    pub validated_at: Value<String>,
    pub size_bytes: Value<i64>,
    /// Why the platform refuses to delete it now (linked clones); null otherwise.
    pub protected: Value<String>,
}

impl ImageEntry {
    pub fn from_image(i: &Image) -> Self {
        ImageEntry {
            name: Value::Value(i.name().to_string()),
            image_id: Value::Value(i.id.clone()),
            status: Value::Value(i.status().as_str().to_owned()),
            build_date: Value::Value(i.name().date.to_string()),
            build_number: Value::Value(i64::from(i.name().build)),
            recipe_hash: Value::Value(i.meta.recipe_hash.clone()),
            validated_at: i.meta.validated_at.clone().into(),
            size_bytes: i.size_bytes.map(|s| s as i64).into(),
            protected: i.protected.clone().into(),
        }
    }

    pub fn schema_type() -> tf_provider::schema::AttributeType {
        use tf_provider::schema::AttributeType as T;
        T::Object(
            [
                ("name", T::String),
                ("image_id", T::String),
                ("status", T::String),
                ("build_date", T::String),
                ("build_number", T::Number),
                ("recipe_hash", T::String),
                ("validated_at", T::String),
                ("size_bytes", T::Number),
                ("protected", T::String),
            ]
            .into_iter()
            .map(|(k, t)| (k.to_owned(), t))
            .collect(),
        )
    }
}
