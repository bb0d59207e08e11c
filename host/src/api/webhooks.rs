//! Webhooks in (docs/webhooks.md): QuickBooks' change notifications at
//! `POST /webhooks/quickbooks`. The `intuit-signature` header is verified in
//! constant time against the verifier tokens (the server's, and connections'
//! own); a notification runs only the connections of the app whose token
//! signed it; both payload formats are read (the legacy
//! `eventNotifications` and the CloudEvents array); each connection of a
//! notified company gets one incremental run soon: notifications only mark
//! it, and the scheduler runs it once they have been quiet for a moment, so a
//! burst makes one run. Answered at once: QuickBooks wants an answer within
//! 3 seconds.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeSet;

use super::{internal, ApiError, ApiState};

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

fn unauthorized() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "invalid_signature",
        message: "`intuit-signature` does not verify with the verifier token".into(),
    }
}

pub(super) async fn quickbooks(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::request_body(body)?;
    let signature = headers.get("intuit-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let models = state.endpoints.iter().map(|e| e.model.to_ascii_lowercase()).collect::<BTreeSet<_>>();
    let global = state.control.verifier_token.clone();
    let db = state.db.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let Some(signature) = signature else {
            crate::metrics::notification("rejected");
            return Err(unauthorized());
        };
        // Which app signed it: the server's token (None) or a connection's
        // own. Only that app's connections are run.
        let mut signers: Vec<Option<String>> = Vec::new();
        if global.as_deref().is_some_and(|token| verify_intuit_signature(token, &body, &signature)) {
            signers.push(None);
        }
        let own_tokens = db.connections().and_then(|mut c| c.verifier_tokens()).map_err(internal)?;
        signers.extend(own_tokens.into_iter().filter(|token| verify_intuit_signature(token, &body, &signature)).map(Some));
        if signers.is_empty() {
            crate::metrics::notification("rejected");
            tracing::warn!(target: "webhooks", "a QuickBooks notification with a bad signature was refused");
            return Err(unauthorized());
        }
        let payload: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_notification", format!("the notification is not JSON: {e}")))?;
        let notified = notified(&payload).ok_or_else(|| {
            ApiError::bad_request("invalid_notification", "neither `eventNotifications` nor a CloudEvents array")
        })?;
        let now = crate::time::now_us();
        let mut connections = db.connections().map_err(internal)?;
        let mut marked = BTreeSet::new();
        for (realm, entity) in notified.iter().filter(|(_, entity)| models.contains(&entity.to_ascii_lowercase())) {
            let mut ids = Vec::new();
            for signer in &signers {
                ids.extend(connections.notify_realm(realm, now, signer.as_deref()).map_err(internal)?);
            }
            if ids.is_empty() {
                tracing::info!(target: "webhooks", realm = %realm, entity = %entity, "notification for a company no connection syncs: ignored");
            }
            marked.extend(ids);
        }
        crate::metrics::notification(if marked.is_empty() { "ignored" } else { "accepted" });
        Ok(json!({ "accepted": true, "connections": marked }))
    })
    .await
    .map_err(internal)??;
    if let Some(waker) = &state.control.waker {
        waker.notify_one();
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

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
