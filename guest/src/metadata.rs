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

/// QuickBooks' quota per company (realm) and app: 500 requests a minute and
/// 10 at once, shared by everything the app does for the company
/// (docs/quickbooks.md, "Throttling").
pub const REQUESTS_PER_MINUTE: u32 = 500;
pub const MAX_CONCURRENT: u32 = 10;
/// Intuit documents no `Retry-After` on its 429s and says to wait a minute.
pub const THROTTLE_WAIT_SECS: u32 = 60;

/// A key of the connection's configuration: name, description, required.
pub const CONFIGURATION: &[(&str, &str, bool)] = &[
    ("realmId", "The QuickBooks company (realm) id, digits, e.g. `9341453050804937`.", true),
    (
        crate::reconcile::EVERY_KEY,
        "How often at least to list every customer to catch deletions QuickBooks' change feed cannot show: \
         `off`, or a duration such as `24h` (the default), `90m` or `2d`.",
        false,
    ),
];

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
