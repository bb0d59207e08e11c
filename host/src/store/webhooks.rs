//! Webhook deliveries to the user's application, kept until delivered or
//! given up, so a restart loses none.

use super::StoreError;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Refused by the receiver (a 4xx), or still failing after every attempt.
    GivenUp,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::GivenUp => "given_up",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "given_up" => Some(DeliveryStatus::GivenUp),
            _ => None,
        }
    }
}

/// How a webhook's body is shaped and signed (docs/webhooks.md, docs/nango.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// sync-host's own body, signed with `X-Sync-Signature`.
    #[default]
    SyncHost,
    /// Nango's sync webhook, signed with `X-Nango-Hmac-Sha256` and `X-Nango-Signature`.
    Nango,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::SyncHost => "sync-host",
            WebhookFormat::Nango => "nango",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "sync-host" => Some(WebhookFormat::SyncHost),
            "nango" => Some(WebhookFormat::Nango),
            _ => None,
        }
    }
}

/// One webhook to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub connection: String,
    pub run: Option<String>,
    pub url: String,
    pub body: String,
    /// The format it was queued in: which signature headers it is sent with.
    pub format: WebhookFormat,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_us: i64,
    pub last_error: Option<String>,
    pub created_us: i64,
    pub delivered_us: Option<i64>,
}

/// The webhook-deliveries handle ([`super::Store::deliveries`]).
pub trait Deliveries: Send + Sync {
    /// Queues a delivery of `body`, in `format`, due now; returns its id.
    fn enqueue(
        &self,
        connection: &str,
        run: Option<&str>,
        url: &str,
        body: &str,
        format: WebhookFormat,
    ) -> Result<i64, StoreError>;
    /// Claims up to `limit` due deliveries for `lease_us`: another worker (in
    /// this process or another) does not take them meanwhile.
    fn claim_due(&self, now_us: i64, lease_us: i64, limit: u32) -> Result<Vec<Delivery>, StoreError>;
    fn delivered(&self, id: i64, attempts: u32, at_us: i64) -> Result<(), StoreError>;
    /// Records a failed attempt: tried again at `next_attempt_us`, or given up.
    fn failed(&self, id: i64, attempts: u32, error: &str, next_attempt_us: Option<i64>) -> Result<(), StoreError>;
    /// The connection's deliveries, newest first, before id `before`.
    fn list(&self, connection: &str, before: Option<i64>, limit: u32) -> Result<(Vec<Delivery>, bool), StoreError>;
}
