//! The Customer model written independently of the guest, for comparisons.

#[allow(unused_imports)]
use super::*;

/// The Customer model (docs/quickbooks.md), written independently of the
/// guest's code, for comparisons.
pub fn map_customer(c: &Value) -> Value {
    let s = |v: &Value| if v.is_string() { v.clone() } else { Value::Null };
    let address = |a: &Value| {
        if a.is_object() {
            serde_json::json!({
                "city": s(&a["City"]), "line1": s(&a["Line1"]), "postal_code": s(&a["PostalCode"]),
                "country": s(&a["Country"]), "id": a["Id"].as_str().unwrap_or(""),
            })
        } else {
            Value::Null
        }
    };
    let utc = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp"))
            .expect("rfc3339")
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    serde_json::json!({
        "id": c["Id"].as_str().unwrap(),
        "given_name": s(&c["GivenName"]),
        "display_name": s(&c["DisplayName"]),
        "active": c["Active"].as_bool().unwrap_or(true),
        "balance_cents": cents(&c["Balance"]),
        "taxable": c["Taxable"].as_bool().unwrap_or(false),
        "primary_email": s(&c["PrimaryEmailAddr"]["Address"]),
        "primary_phone": s(&c["PrimaryPhone"]["FreeFormNumber"]),
        "bill_address": address(&c["BillAddr"]),
        "ship_address": address(&c["ShipAddr"]),
        "created_at": utc(&c["MetaData"]["CreateTime"]),
        "updated_at": utc(&c["MetaData"]["LastUpdatedTime"]),
    })
}

/// Cents from a JSON number by string arithmetic on its shortest text.
fn cents(balance: &Value) -> i64 {
    if balance.is_null() {
        return 0;
    }
    let text = balance.to_string();
    let negative = text.starts_with('-');
    let digits = text.trim_start_matches('-');
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut fraction: Vec<u8> = fraction.bytes().map(|b| b - b'0').collect();
    fraction.resize(fraction.len().max(3), 0);
    let mut value = whole.parse::<i64>().unwrap() * 100 + i64::from(fraction[0]) * 10 + i64::from(fraction[1]);
    if fraction[2] >= 5 {
        value += 1;
    }
    if negative {
        -value
    } else {
        value
    }
}
