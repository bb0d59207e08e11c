//! What the sync is, for a platform to register it from `describe` alone.

use serde_json::json;

use crate::customer::MODEL;

pub const NAME: &str = "customers";
pub const DESCRIPTION: &str = "Fetches all QuickBooks customers. Handles both active and archived customers, \
saving or deleting them based on their status.";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const SCOPES: &[&str] = &["com.intuit.quickbooks.accounting"];
pub const FREQUENCY: &str = "every hour";
pub const ENDPOINT_METHOD: &str = "GET";
pub const ENDPOINT_PATH: &str = "/customers";

/// The model this sync saves.
pub const MODEL_NAME: &str = MODEL;

/// JSON Schema (draft 2020-12) of one Customer record.
pub fn customer_schema() -> String {
    let nullable_string = json!({"type": ["string", "null"]});
    let address = json!({
        "type": ["object", "null"],
        "additionalProperties": false,
        "required": ["city", "line1", "postal_code", "country", "id"],
        "properties": {
            "city": nullable_string, "line1": nullable_string,
            "postal_code": nullable_string, "country": nullable_string,
            "id": {"type": "string", "description": "QuickBooks' address Id; empty when it has none"}
        }
    });
    let timestamp = json!({"type": "string", "format": "date-time", "pattern": "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$"});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": MODEL,
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "given_name", "display_name", "active", "balance_cents", "taxable",
                     "primary_email", "primary_phone", "bill_address", "ship_address", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "given_name": nullable_string,
            "display_name": nullable_string,
            "active": {"type": "boolean"},
            "balance_cents": {"type": "integer", "description": "Balance in cents, exact"},
            "taxable": {"type": "boolean"},
            "primary_email": nullable_string,
            "primary_phone": nullable_string,
            "bill_address": address,
            "ship_address": address,
            "created_at": timestamp,
            "updated_at": timestamp
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_requires_every_field_of_the_mapped_records() {
        let schema: serde_json::Value = serde_json::from_str(&customer_schema()).unwrap();
        let expected: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/qbo-customers-page.expected.json")).unwrap();
        let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let fields: Vec<&str> = expected[0].as_object().unwrap().keys().map(String::as_str).collect();
        let mut required_sorted = required.clone();
        required_sorted.sort();
        let mut fields_sorted = fields.clone();
        fields_sorted.sort();
        assert_eq!(required_sorted, fields_sorted);
    }
}
