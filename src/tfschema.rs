//! Terraform schema helpers shared by the provider block, resources, data
//! sources and the platforms' own blocks.

use std::collections::HashMap;

use tf_provider::schema::{
    Attribute, AttributeConstraint as C, AttributeType as T, Block, Description,
};

pub fn attr(t: T, c: C, doc: &str) -> Attribute {
    Attribute {
        attr_type: t,
        description: Description::markdown(doc),
        constraint: c,
        ..Default::default()
    }
}

/// A `sensitive` attribute: never shown in plans or logs, kept out of state.
pub fn secret(t: T, c: C, doc: &str) -> Attribute {
    Attribute {
        sensitive: true,
        ..attr(t, c, doc)
    }
}

pub fn block(attrs: Vec<(&str, Attribute)>, doc: &str) -> Block {
    Block {
        version: 1,
        attributes: attrs.into_iter().map(|(k, a)| (k.to_owned(), a)).collect(),
        blocks: HashMap::new(),
        description: Description::markdown(doc),
        deprecated: false,
    }
}
