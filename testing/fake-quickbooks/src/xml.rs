//! A rough XML rendering of QBO's JSON answers, for clients that forget
//! `Accept: application/json` (QBO's default is XML).
//!
//! QBO's XML puts lower-case scalar properties in attributes (`<Customer domain="QBO"
//! sparse="false">`, `<QueryResponse startPosition="1" maxResults="3">`,
//! `<Error code="4000">`) and everything else in elements; arrays repeat the element.

use serde_json::{Map, Value};

const NAMESPACE: &str = "http://schema.intuit.com/finance/v3";

/// Renders a top-level answer `{"X": ..., "time": "..."}` as an `IntuitResponse`.
pub fn render(answer: &Value) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#);
    out.push('\n');
    out.push_str(&format!(r#"<IntuitResponse xmlns="{NAMESPACE}""#));
    let empty = Map::new();
    let map = answer.as_object().unwrap_or(&empty);
    if let Some(time) = map.get("time").and_then(Value::as_str) {
        out.push_str(&format!(r#" time="{}""#, escape(time)));
    }
    out.push('>');
    for (key, value) in map {
        if key != "time" {
            element(key, value, &mut out);
        }
    }
    out.push_str("</IntuitResponse>");
    out
}

fn is_attribute(key: &str, value: &Value) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Customer JSON can come from admin users, so keys are made into valid names.
fn name(key: &str) -> String {
    let mut n: String =
        key.chars().map(|c| if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    if !n.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        n.insert(0, '_');
    }
    n
}

fn element(key: &str, value: &Value, out: &mut String) {
    let tag = name(key);
    match value {
        Value::Array(items) => {
            for item in items {
                element(key, item, out);
            }
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(&tag);
            for (k, v) in map.iter().filter(|(k, v)| is_attribute(k, v)) {
                out.push_str(&format!(r#" {}="{}""#, name(k), escape(&scalar(v))));
            }
            out.push('>');
            for (k, v) in map.iter().filter(|(k, v)| !is_attribute(k, v)) {
                element(k, v, out);
            }
            out.push_str(&format!("</{tag}>"));
        }
        Value::Null => out.push_str(&format!("<{tag}/>")),
        other => out.push_str(&format!("<{tag}>{}</{tag}>", escape(&scalar(other)))),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_attributes_elements_and_escapes() {
        let xml = render(&json!({
            "QueryResponse": {"Customer": [{"Id": "1", "domain": "QBO", "DisplayName": "A&B <\"O'Brien\">"},
                                            {"Id": "2", "domain": "QBO"}],
                              "startPosition": 1, "maxResults": 2},
            "time": "2026-05-05T05:00:00.000-07:00"
        }));
        assert!(xml.contains(
            r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-05-05T05:00:00.000-07:00">"#
        ));
        assert!(xml.contains(r#" startPosition="1""#) && xml.contains(r#" maxResults="2""#));
        assert!(xml.contains(r#"<Customer domain="QBO">"#) && xml.contains("<Id>1</Id>"));
        assert!(xml.contains("<DisplayName>A&amp;B &lt;&quot;O&apos;Brien&quot;&gt;</DisplayName>"));
        assert_eq!(xml.matches("<Customer ").count(), 2);
        assert!(xml.ends_with("</IntuitResponse>"));
    }
}
