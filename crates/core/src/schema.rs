//! Typed event schemas: a project may declare the attributes an event carries, and events of that
//! name are then checked against the declaration, field by field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
}

impl AttributeType {
    fn accepts(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Int => v.is_i64() || v.is_u64(),
            Self::Float => v.is_number(),
            Self::Bool => v.is_boolean(),
            Self::Timestamp => v
                .as_str()
                .is_some_and(|s| crate::time::parse_rfc3339(s).is_some()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an integer",
            Self::Float => "a number",
            Self::Bool => "a boolean",
            Self::Timestamp => "an RFC 3339 timestamp string",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttributeType,
    #[serde(default)]
    pub required: bool,
}

/// The declared attributes (properties) of one event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSchema {
    pub event: String,
    pub fields: Vec<SchemaField>,
    /// When true, properties not declared here are rejected.
    #[serde(default)]
    pub additional_properties_forbidden: bool,
}

impl EventSchema {
    /// Every problem of `properties` against this schema (empty when valid).
    pub fn validate(&self, properties: &Map<String, Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for f in &self.fields {
            match properties.get(&f.name) {
                None | Some(Value::Null) if f.required => errors.push(FieldError::new(
                    "missing_required",
                    format!("properties.{}", f.name),
                    format!("is required by the schema of `{}`", self.event),
                )),
                None | Some(Value::Null) => {}
                Some(v) if !f.kind.accepts(v) => errors.push(FieldError::new(
                    "wrong_type",
                    format!("properties.{}", f.name),
                    format!("must be {}", f.kind.describe()),
                )),
                Some(_) => {}
            }
        }
        if self.additional_properties_forbidden {
            for k in properties.keys() {
                if !self.fields.iter().any(|f| &f.name == k) {
                    errors.push(FieldError::new(
                        "undeclared_property",
                        format!("properties.{k}"),
                        format!("is not declared in the schema of `{}`", self.event),
                    ));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_field() {
        let s: EventSchema = serde_json::from_value(json!({
            "event": "purchase",
            "fields": [
                {"name": "amount", "type": "float", "required": true},
                {"name": "items", "type": "int"},
                {"name": "at", "type": "timestamp"}
            ]
        }))
        .unwrap();
        let props = json!({"items": 1.5, "at": "yesterday"});
        let errs = s.validate(props.as_object().unwrap());
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["properties.amount", "properties.items", "properties.at"]
        );
        let ok = json!({"amount": 3, "items": 2, "at": "2026-01-01T00:00:00Z"});
        assert!(s.validate(ok.as_object().unwrap()).is_empty());
    }
}
