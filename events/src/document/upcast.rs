//! The upcasting steps of document events whose schema changed; [`Upcasters::standard`] registers them.
//!
//! Steps are strict: a stored payload that lacks a field or has one of the wrong type is reported (as a corrupt
//! event, with the field's name) rather than lifted into something the audit trail never said.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::document::events::{DocumentPayload, DocumentUploaded};
use crate::upcast::Upcasters;

/// Registers every document event upcasting step.
pub fn register_upcasters(upcasters: &mut Upcasters) {
    upcasters.register(DocumentUploaded::EVENT_TYPE, 1, document_uploaded_v1_to_v2);
}

/// `DocumentUploaded` v1 → v2: the flat `sha256` and `size` move into `blob: { sha256, size }`, the reference the
/// blob store hands out. Fields the step does not know are kept, as v2 readers ignore them.
pub(super) fn document_uploaded_v1_to_v2(data: Value) -> Result<Value, String> {
    let Value::Object(mut fields) = data else {
        return Err(format!("expected a JSON object, got {}", type_name(&data)));
    };
    let document_id = string_field(&fields, "document_id")?;
    Uuid::parse_str(document_id).map_err(|error| format!("field `document_id` is not a UUID: {error}"))?;
    string_field(&fields, "filename")?;
    string_field(&fields, "media_type")?;
    match field(&fields, "metadata")? {
        Value::Object(_) => {}
        other => return Err(wrong_type("metadata", "an object", other)),
    }
    let size = match field(&fields, "size")? {
        Value::Number(number) if number.is_u64() => Value::Number(number.clone()),
        other => return Err(wrong_type("size", "a non-negative integer", other)),
    };
    let sha256 = Value::String(string_field(&fields, "sha256")?.to_owned());
    fields.remove("size");
    fields.remove("sha256");
    fields.insert(
        "blob".to_owned(),
        Value::Object(Map::from_iter([("sha256".to_owned(), sha256), ("size".to_owned(), size)])),
    );
    Ok(Value::Object(fields))
}

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    fields.get(name).ok_or_else(|| format!("missing field `{name}`"))
}

fn string_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match field(fields, name)? {
        Value::String(text) => Ok(text),
        other => Err(wrong_type(name, "a string", other)),
    }
}

fn wrong_type(name: &str, expected: &str, found: &Value) -> String {
    format!("field `{name}` must be {expected}, found {}", type_name(found))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
