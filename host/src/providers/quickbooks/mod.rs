//! QuickBooks Online (docs/quickbooks.md): Intuit's token endpoint, the
//! company (`realmId`) a connection syncs, and the change notifications
//! Intuit sends — signed with `intuit-signature` (base64 HMAC-SHA256 of the
//! body under the app's verifier token), in the legacy `eventNotifications`
//! format or as an array of CloudEvents.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::BTreeSet;

use super::Provider;

/// Intuit's OAuth 2.0 token endpoint.
pub const TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";

/// The configuration key of the company a connection syncs.
pub const REALM_KEY: &str = "realmId";

/// The configuration of a connection to the company `realm_id`.
pub fn config(realm_id: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([(REALM_KEY.to_owned(), realm_id.to_owned())])
}

/// QuickBooks Online.
pub struct QuickBooks;

impl Provider for QuickBooks {
    fn name(&self) -> &'static str {
        "quickbooks"
    }

    fn default_token_url(&self) -> &'static str {
        TOKEN_URL
    }

    fn account_key(&self) -> &'static str {
        REALM_KEY
    }

    fn signature_header(&self) -> &'static str {
        "intuit-signature"
    }

    fn verify(&self, token: &str, body: &[u8], signature: &str) -> bool {
        verify_intuit_signature(token, body, signature)
    }

    fn read_notification(&self, body: &[u8]) -> Result<BTreeSet<(String, String)>, String> {
        let payload: Value = serde_json::from_slice(body).map_err(|e| format!("the notification is not JSON: {e}"))?;
        notified(&payload).ok_or_else(|| "neither `eventNotifications` nor a CloudEvents array".to_owned())
    }
}

/// Whether `signature` (base64) is the HMAC-SHA256 of `body` under `token`;
/// constant time.
pub fn verify_intuit_signature(token: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// (realm, entity) pairs a notification names, in either format.
pub fn notified(payload: &Value) -> Option<BTreeSet<(String, String)>> {
    let mut found = BTreeSet::new();
    if let Some(notifications) = payload.get("eventNotifications").and_then(Value::as_array) {
        for notification in notifications {
            let realm = notification.get("realmId").and_then(Value::as_str)?;
            let entities = notification.pointer("/dataChangeEvent/entities").and_then(Value::as_array)?;
            for entity in entities {
                found.insert((realm.to_owned(), entity.get("name").and_then(Value::as_str)?.to_owned()));
            }
        }
        return Some(found);
    }
    // CloudEvents: `type` is `qbo.<entity>.<operation>.v<n>`.
    for event in payload.as_array()? {
        let realm = event.get("intuitaccountid").and_then(Value::as_str)?;
        let kind = event.get("type").and_then(Value::as_str)?;
        let entity = kind.strip_prefix("qbo.")?.split('.').next()?;
        found.insert((realm.to_owned(), entity.to_owned()));
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_formats_name_realms_and_entities() {
        let legacy = json!({"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": [
            {"name": "Customer", "id": "5", "operation": "Update", "lastUpdated": "2026-05-05T05:00:00.000Z"},
            {"name": "Invoice", "id": "9", "operation": "Create", "lastUpdated": "2026-05-05T05:00:00.000Z"}]}}]});
        let found: Vec<(String, String)> = notified(&legacy).unwrap().into_iter().collect();
        assert_eq!(found, vec![("1".into(), "Customer".into()), ("1".into(), "Invoice".into())]);
        let cloud = json!([{"specversion": "1.0", "id": "a", "source": "intuit", "type": "qbo.customer.merged.v1",
            "time": "2026-05-05T05:00:00Z", "intuitentityid": "5", "intuitaccountid": "2", "data": {"deletedid": "4"}}]);
        let found: Vec<(String, String)> = notified(&cloud).unwrap().into_iter().collect();
        assert_eq!(found, vec![("2".into(), "customer".into())]);
        assert!(notified(&json!({"something": "else"})).is_none());
        assert!(QuickBooks.read_notification(b"not json").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn the_signature_is_base64_hmac_sha256_and_anything_else_fails() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"verifier").unwrap();
        mac.update(b"{}");
        let good = STANDARD.encode(mac.finalize().into_bytes());
        assert!(verify_intuit_signature("verifier", b"{}", &good));
        assert!(!verify_intuit_signature("other", b"{}", &good));
        assert!(!verify_intuit_signature("verifier", b"{ }", &good));
        assert!(!verify_intuit_signature("verifier", b"{}", "not base64!"));
    }
}
