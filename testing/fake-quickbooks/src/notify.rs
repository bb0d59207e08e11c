//! QuickBooks' change notifications (webhooks), sent by the fake to a host:
//! the legacy `eventNotifications` payload or, mandatory from 2026, an array
//! of CloudEvents; signed with `intuit-signature`, base64 of the
//! HMAC-SHA256 of the body under the app's verifier token.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::store::response_time;
use crate::FakeQbo;

/// Which payload format to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationFormat {
    /// `{"eventNotifications": [{"realmId", "dataChangeEvent": {"entities": [...]}}]}`
    Legacy,
    /// `[{"specversion": "1.0", "type": "qbo.customer.updated.v1", "intuitaccountid", ...}]`
    CloudEvents,
}

/// What happened to a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Merge,
}

impl Operation {
    fn legacy(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Update => "Update",
            Operation::Delete => "Delete",
            Operation::Merge => "Merge",
        }
    }

    fn cloud_event(self) -> &'static str {
        match self {
            Operation::Create => "created",
            Operation::Update => "updated",
            Operation::Delete => "deleted",
            Operation::Merge => "merged",
        }
    }
}

/// `intuit-signature` of `body` under `verifier_token`.
pub fn intuit_signature(verifier_token: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(verifier_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl FakeQbo {
    /// The payload QuickBooks would send about `changes` (customer id, operation).
    pub fn notification_payload(&self, format: NotificationFormat, changes: &[(&str, Operation)]) -> String {
        let time = response_time(self.now());
        let realm = self.realm_id();
        let payload = match format {
            NotificationFormat::Legacy => json!({"eventNotifications": [{
                "realmId": realm,
                "dataChangeEvent": {"entities": changes.iter().map(|(id, op)| json!({
                    "name": "Customer", "id": id, "operation": op.legacy(), "lastUpdated": time,
                })).collect::<Vec<Value>>()},
            }]}),
            NotificationFormat::CloudEvents => Value::Array(
                changes
                    .iter()
                    .enumerate()
                    .map(|(n, (id, op))| {
                        let mut event = json!({
                            "specversion": "1.0",
                            "id": format!("fake-event-{}-{n}", self.now().timestamp_millis()),
                            "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
                            "type": format!("qbo.customer.{}.v1", op.cloud_event()),
                            "datacontenttype": "application/json",
                            "time": time,
                            "intuitentityid": id,
                            "intuitaccountid": realm,
                            "data": {},
                        });
                        if *op == Operation::Merge {
                            event["data"] = json!({"deletedid": id});
                        }
                        event
                    })
                    .collect(),
            ),
        };
        payload.to_string()
    }

    /// POSTs a signed notification to `url` (the host's `/webhooks/quickbooks`)
    /// and returns the status it answered.
    pub fn notify(
        &self,
        url: &str,
        verifier_token: &str,
        format: NotificationFormat,
        changes: &[(&str, Operation)],
    ) -> anyhow::Result<u16> {
        let body = self.notification_payload(format, changes);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("intuit-signature", intuit_signature(verifier_token, body.as_bytes()))
            .send(body.as_bytes())?;
        Ok(response.status().as_u16())
    }
}
