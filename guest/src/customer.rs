//! The Customer model and its mapping from a QuickBooks `Customer` object
//! (docs/quickbooks.md, "The Customer model"). Every field is always present in the output: `null`, never missing.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::money::{decimal_to_cents, MoneyError};

/// Name of the model, as declared in `describe` and passed to the records store.
pub const MODEL: &str = "Customer";

/// A QuickBooks customer as the query and CDC endpoints return it; only the
/// fields the model needs. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct QboCustomer {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "GivenName")]
    pub given_name: Option<String>,
    #[serde(rename = "DisplayName")]
    pub display_name: Option<String>,
    #[serde(rename = "Active")]
    pub active: Option<bool>,
    /// Kept as the JSON number's text so cents are computed exactly.
    #[serde(rename = "Balance")]
    pub balance: Option<Box<RawValue>>,
    #[serde(rename = "Taxable")]
    pub taxable: Option<bool>,
    #[serde(rename = "PrimaryEmailAddr")]
    pub primary_email: Option<QboEmail>,
    #[serde(rename = "PrimaryPhone")]
    pub primary_phone: Option<QboPhone>,
    #[serde(rename = "BillAddr")]
    pub bill_addr: Option<QboAddress>,
    #[serde(rename = "ShipAddr")]
    pub ship_addr: Option<QboAddress>,
    #[serde(rename = "MetaData")]
    pub metadata: Option<QboMetaData>,
}

#[derive(Debug, Deserialize)]
pub struct QboEmail {
    #[serde(rename = "Address")]
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct QboPhone {
    #[serde(rename = "FreeFormNumber")]
    pub free_form_number: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct QboAddress {
    #[serde(rename = "Id")]
    pub id: Option<String>,
    #[serde(rename = "City")]
    pub city: Option<String>,
    #[serde(rename = "Line1")]
    pub line1: Option<String>,
    #[serde(rename = "PostalCode")]
    pub postal_code: Option<String>,
    #[serde(rename = "Country")]
    pub country: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct QboMetaData {
    #[serde(rename = "CreateTime")]
    pub create_time: Option<String>,
    #[serde(rename = "LastUpdatedTime")]
    pub last_updated_time: Option<String>,
}

/// One record of the Customer model. The fields are in the order of their
/// names, so the JSON written is already canonical (keys sorted): the host
/// hashes it as it reads it, without sorting (docs/store.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub active: bool,
    pub balance_cents: i64,
    pub bill_address: Option<Address>,
    pub created_at: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub id: String,
    pub primary_email: Option<String>,
    pub primary_phone: Option<String>,
    pub ship_address: Option<Address>,
    pub taxable: bool,
    pub updated_at: String,
}

/// A billing or shipping address of the Customer model (fields in name order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub city: Option<String>,
    pub country: Option<String>,
    /// QuickBooks' address id; `""` when QuickBooks gave none.
    pub id: String,
    pub line1: Option<String>,
    pub postal_code: Option<String>,
}

/// Why a QuickBooks customer could not be mapped. Names the customer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MappingError {
    #[error("customer {id}: Balance {source}")]
    Balance { id: String, source: MoneyError },
    #[error("customer {id}: MetaData.{field} is missing")]
    MissingTimestamp { id: String, field: &'static str },
    #[error("customer {id}: MetaData.{field} `{value}` is not an RFC 3339 timestamp")]
    BadTimestamp { id: String, field: &'static str, value: String },
    #[error("a customer has an empty Id")]
    EmptyId,
}

impl QboCustomer {
    /// Whether QuickBooks considers the customer active (absent means active).
    pub fn is_active(&self) -> bool {
        self.active.unwrap_or(true)
    }

    /// `MetaData.LastUpdatedTime` as QuickBooks wrote it, if present.
    pub fn last_updated_text(&self) -> Option<&str> {
        self.metadata.as_ref()?.last_updated_time.as_deref()
    }

    /// Maps to the Customer model.
    pub fn to_customer(&self) -> Result<Customer, MappingError> {
        if self.id.is_empty() {
            return Err(MappingError::EmptyId);
        }
        let balance_cents = match &self.balance {
            None => 0,
            Some(raw) => decimal_to_cents(raw.get().trim_matches('"'))
                .map_err(|source| MappingError::Balance { id: self.id.clone(), source })?,
        };
        let metadata = self.metadata.as_ref();
        Ok(Customer {
            id: self.id.clone(),
            given_name: self.given_name.clone(),
            display_name: self.display_name.clone(),
            active: self.is_active(),
            balance_cents,
            taxable: self.taxable.unwrap_or(false),
            primary_email: self.primary_email.as_ref().and_then(|e| e.address.clone()),
            primary_phone: self.primary_phone.as_ref().and_then(|p| p.free_form_number.clone()),
            bill_address: self.bill_addr.as_ref().map(Address::from),
            ship_address: self.ship_addr.as_ref().map(Address::from),
            created_at: utc_millis(&self.id, "CreateTime", metadata.and_then(|m| m.create_time.as_deref()))?,
            updated_at: utc_millis(&self.id, "LastUpdatedTime", metadata.and_then(|m| m.last_updated_time.as_deref()))?,
        })
    }
}

impl From<&QboAddress> for Address {
    fn from(address: &QboAddress) -> Self {
        Address {
            city: address.city.clone(),
            line1: address.line1.clone(),
            postal_code: address.postal_code.clone(),
            country: address.country.clone(),
            id: address.id.clone().unwrap_or_default(),
        }
    }
}

/// Parses a QuickBooks timestamp (RFC 3339 with an offset).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn utc_millis(id: &str, field: &'static str, value: Option<&str>) -> Result<String, MappingError> {
    let text = value.ok_or_else(|| MappingError::MissingTimestamp { id: id.to_owned(), field })?;
    let instant = parse_timestamp(text).ok_or_else(|| MappingError::BadTimestamp {
        id: id.to_owned(),
        field,
        value: text.to_owned(),
    })?;
    Ok(instant.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const RECORDED_PAGE: &str = include_str!("../../tests/fixtures/qbo-customers-page.json");
    const EXPECTED: &str = include_str!("../../tests/fixtures/qbo-customers-page.expected.json");

    fn map(value: Value) -> Result<Value, MappingError> {
        let customer: QboCustomer = serde_json::from_str(&value.to_string()).expect("deserializes");
        customer.to_customer().map(|c| serde_json::to_value(c).unwrap())
    }

    #[test]
    fn recorded_sandbox_page_maps_to_the_expected_records() {
        let page = crate::qbo::parse_query_page(RECORDED_PAGE.as_bytes()).expect("parses");
        let mapped: Vec<Value> =
            page.customers.iter().map(|c| serde_json::to_value(c.to_customer().unwrap()).unwrap()).collect();
        let expected: Vec<Value> = serde_json::from_str(EXPECTED).unwrap();
        assert_eq!(mapped.len(), 33);
        for (got, want) in mapped.iter().zip(&expected) {
            assert_eq!(got, want, "customer {}", want["id"]);
        }
        assert_eq!(mapped, expected);
    }

    #[test]
    fn every_field_is_present_and_null_when_quickbooks_has_nothing() {
        let record = map(json!({
            "Id": "7",
            "MetaData": {"CreateTime": "2026-01-02T03:04:05Z", "LastUpdatedTime": "2026-01-02T03:04:05Z"}
        }))
        .unwrap();
        assert_eq!(
            record,
            json!({
                "id": "7", "given_name": null, "display_name": null, "active": true,
                "balance_cents": 0, "taxable": false, "primary_email": null, "primary_phone": null,
                "bill_address": null, "ship_address": null,
                "created_at": "2026-01-02T03:04:05.000Z", "updated_at": "2026-01-02T03:04:05.000Z"
            })
        );
        // Written with its keys in order: canonical JSON.
        let customer: QboCustomer = serde_json::from_str(r#"{"Id":"7","BillAddr":{"City":"x"},"MetaData":{"CreateTime":"2026-01-02T03:04:05Z","LastUpdatedTime":"2026-01-02T03:04:05Z"}}"#).unwrap();
        let text = serde_json::to_string(&customer.to_customer().unwrap()).unwrap();
        let sorted = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap();
        assert_eq!(text, sorted);
    }

    #[test]
    fn addresses_without_id_get_an_empty_id_and_null_parts() {
        let record = map(json!({
            "Id": "8", "Active": false, "Taxable": true,
            "BillAddr": {"City": "Zürich", "Country": "CH"},
            "ShipAddr": {"Id": "99", "Line1": "1 O'Brien Way", "PostalCode": "D02"},
            "PrimaryEmailAddr": {}, "PrimaryPhone": {"FreeFormNumber": "+41 44 000 00 00"},
            "MetaData": {"CreateTime": "2026-03-31T16:49:28-07:00", "LastUpdatedTime": "2026-04-01T01:00:00.5+05:30"}
        }))
        .unwrap();
        assert_eq!(
            record["bill_address"],
            json!({"city": "Zürich", "line1": null, "postal_code": null, "country": "CH", "id": ""})
        );
        assert_eq!(
            record["ship_address"],
            json!({"city": null, "line1": "1 O'Brien Way", "postal_code": "D02", "country": null, "id": "99"})
        );
        assert_eq!(record["primary_email"], Value::Null);
        assert_eq!(record["active"], json!(false));
        assert_eq!(record["taxable"], json!(true));
        assert_eq!(record["created_at"], json!("2026-03-31T23:49:28.000Z"));
        assert_eq!(record["updated_at"], json!("2026-03-31T19:30:00.500Z"));
    }

    #[test]
    fn balances_are_exact_including_negative_and_three_decimals() {
        let balance = |b: Value| {
            map(json!({"Id": "1", "Balance": b,
                "MetaData": {"CreateTime": "2026-01-02T03:04:05Z", "LastUpdatedTime": "2026-01-02T03:04:05Z"}}))
            .unwrap()["balance_cents"]
                .clone()
        };
        assert_eq!(balance(json!(314.28)), json!(31428));
        assert_eq!(balance(json!(-261)), json!(-26100));
        assert_eq!(balance(json!(-12.345)), json!(-1235));
        assert_eq!(balance(json!(2.675)), json!(268));
        assert_eq!(balance(json!("78.6")), json!(7860));
    }

    #[test]
    fn malformed_customers_are_named_errors() {
        let err = map(json!({"Id": "3", "Balance": "ten",
            "MetaData": {"CreateTime": "2026-01-02T03:04:05Z", "LastUpdatedTime": "2026-01-02T03:04:05Z"}}))
        .unwrap_err();
        assert!(err.to_string().contains("customer 3: Balance"), "{err}");
        let err =
            map(json!({"Id": "4", "MetaData": {"CreateTime": "yesterday", "LastUpdatedTime": "2026-01-02T03:04:05Z"}}))
                .unwrap_err();
        assert!(matches!(err, MappingError::BadTimestamp { field: "CreateTime", .. }), "{err}");
        let err = map(json!({"Id": "5"})).unwrap_err();
        assert!(matches!(err, MappingError::MissingTimestamp { .. }), "{err}");
    }
}
