//! Webhooks out (docs/webhooks.md): after a run that changed something, or
//! failed, the host tells the user's application with a signed JSON POST.
//! Deliveries are kept in the database until delivered or given up, so a
//! restart loses none; a run never waits for one.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::store::{Delivery, Store, WebhookFormat};
use crate::time::now_us;
use secrecy::{ExposeSecret, SecretString};

/// The header carrying the signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Sync-Signature";
/// How often the deliverer looks for due deliveries.
const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed per pass. They are sent one after another, so the
/// lease must outlast them all (see `Deliverer::lease`).
const CLAIM_BATCH: u32 = 4;
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Nango's signature headers (docs/nango.md, "Webhooks"): the hex
/// HMAC-SHA256 of the body, and the legacy hex SHA-256 of secret and body.
pub const NANGO_HMAC_HEADER: &str = "X-Nango-Hmac-Sha256";
pub const NANGO_LEGACY_HEADER: &str = "X-Nango-Signature";

/// `sha256=<hex>` of the HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret, body))
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The signature headers of a delivery in `format`.
pub fn signature_headers(format: WebhookFormat, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    match format {
        WebhookFormat::SyncHost => vec![(SIGNATURE_HEADER, sign(secret, body))],
        WebhookFormat::Nango => {
            use sha2::Digest;
            let legacy = Sha256::new().chain_update(secret.as_bytes()).chain_update(body).finalize();
            vec![(NANGO_HMAC_HEADER, hmac_hex(secret, body)), (NANGO_LEGACY_HEADER, hex::encode(legacy))]
        }
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// The wait after the first failed attempt; it doubles each time.
    pub base: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        // 12 attempts, the last about 34 minutes (1 + 2 + … + 1024 s) after the first.
        DeliveryPolicy { base: Duration::from_secs(1), max_attempts: 12, timeout: Duration::from_secs(10) }
    }
}

/// Sends the pending deliveries of one database.
pub struct Deliverer {
    db: Store,
    /// The secret of connections without their own.
    default_secret: Option<SecretString>,
    policy: DeliveryPolicy,
    agent: ureq::Agent,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth trying again (5xx, 408, 429, network).
    Retry(String),
    /// The receiver refused it (another 4xx), or it cannot be sent.
    GiveUp(String),
}

impl Deliverer {
    pub fn new(db: Store, default_secret: Option<SecretString>, policy: DeliveryPolicy) -> Arc<Self> {
        let agent = crate::provider::client::http_agent(policy.timeout);
        Arc::new(Deliverer {
            db,
            default_secret: default_secret.filter(|s| !s.expose_secret().is_empty()),
            policy,
            agent,
        })
    }

    /// Delivers until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deliverer = self.clone();
            let delivered = tokio::task::spawn_blocking(move || deliverer.deliver_due()).await;
            if let Ok(Err(e)) = delivered {
                tracing::error!(target: "webhooks", "cannot read the pending deliveries: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One pass: claims and sends what is due.
    pub fn deliver_due(&self) -> Result<(), crate::store::StoreError> {
        let due = self.db.deliveries.claim_due(now_us(), self.lease().as_micros() as i64, CLAIM_BATCH)?;
        for delivery in due {
            self.deliver(&delivery)?;
        }
        Ok(())
    }

    /// How long claimed deliveries are left to this worker: longer than a
    /// pass can take (every attempt timing out), so another worker never
    /// sends a delivery this one is still sending.
    fn lease(&self) -> Duration {
        self.policy.timeout * (CLAIM_BATCH + 2)
    }

    fn secret_for(&self, connection: &str) -> Option<SecretString> {
        let own = self.db.connections.secrets(connection).ok().flatten().and_then(|s| s.webhook_secret);
        own.or_else(|| self.default_secret.clone())
    }

    fn deliver(&self, delivery: &Delivery) -> Result<(), crate::store::StoreError> {
        let attempts = delivery.attempts + 1;
        let outcome = match self.secret_for(&delivery.connection) {
            None => Attempt::Retry(
                "no secret to sign it with: give `serve --webhook-secret` or the connection's own".into(),
            ),
            Some(secret) => self.attempt(delivery, secret.expose_secret()),
        };
        let store = &self.db.deliveries;
        match outcome {
            Attempt::Delivered => {
                crate::metrics::webhook_delivery("delivered");
                tracing::info!(target: "webhooks", connection = %delivery.connection, delivery = delivery.id, attempts, "delivered");
                store.delivered(delivery.id, attempts, now_us())
            }
            Attempt::Retry(error) if attempts < self.policy.max_attempts => {
                let wait = crate::schedule::doubling(self.policy.base, attempts, MAX_BACKOFF);
                crate::metrics::webhook_delivery("retried");
                tracing::warn!(target: "webhooks", connection = %delivery.connection, delivery = delivery.id, attempts, "{error}; trying again in {wait:?}");
                store.failed(delivery.id, attempts, &error, Some(now_us() + wait.as_micros() as i64))
            }
            Attempt::Retry(error) | Attempt::GiveUp(error) => {
                crate::metrics::webhook_delivery("given_up");
                tracing::warn!(target: "webhooks", connection = %delivery.connection, delivery = delivery.id, attempts, "giving up: {error}");
                store.failed(delivery.id, attempts, &error, None)
            }
        }
    }

    fn attempt(&self, delivery: &Delivery, secret: &str) -> Attempt {
        let mut request = ureq::http::Request::builder()
            .method("POST")
            .uri(&delivery.url)
            .header("Content-Type", "application/json")
            .header("X-Sync-Delivery", delivery.id.to_string());
        for (name, value) in signature_headers(delivery.format, secret, delivery.body.as_bytes()) {
            request = request.header(name, value);
        }
        let request = request.body(delivery.body.clone().into_bytes());
        let request = match request {
            Ok(request) => request,
            Err(e) => return Attempt::GiveUp(format!("cannot build the request to {}: {e}", delivery.url)),
        };
        match self.agent.run(request) {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Attempt::Delivered,
                    408 | 429 | 500..=599 => Attempt::Retry(format!("the receiver answered {status}")),
                    _ => Attempt::GiveUp(format!("the receiver refused it with {status}")),
                }
            }
            Err(e) => Attempt::Retry(format!("cannot reach the receiver: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn nango_deliveries_carry_the_hmac_and_the_legacy_digest() {
        let headers = signature_headers(WebhookFormat::Nango, "Jefe", b"what do ya want for nothing?");
        assert_eq!(
            headers,
            vec![
                (NANGO_HMAC_HEADER, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843".to_owned()),
                // sha256("Jefe" followed by the body), as `printf %s … | sha256sum` gives it.
                (NANGO_LEGACY_HEADER, "689a1a0fa183259e022c4d77a4eb0810a94e9090d132c5f8732ccce2b36e3621".to_owned()),
            ]
        );
    }
}
