//! Webhooks out (docs/webhooks.md): after a run that changed something, or
//! failed, the host tells the user's application with a signed JSON POST.
//! Deliveries are kept in the database until delivered or given up, so a
//! restart loses none; a run never waits for one.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::store::{Delivery, Store, WebhookFormat};
use crate::time::now_us;
use secrecy::{ExposeSecret, SecretString};

/// The header carrying the signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Sync-Signature";
/// How often the deliverer looks for due deliveries (it also looks as soon
/// as an attempt ends).
const POLL: Duration = Duration::from_secs(1);
/// How long a claimed delivery is left to this process beyond one attempt's
/// total timeout: room for the store's writes and for the short wait behind
/// a fast attempt of the same connection (see [`Deliverer::lease`]).
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// A claimed delivery starts only while its lease has at least one total
/// timeout and this much left; otherwise it is left to its lease.
const START_MARGIN: Duration = Duration::from_secs(5);
/// A connection whose attempt has been in flight this long keeps none of its
/// other deliveries waiting behind it: they go back to the store (due again
/// when their lease ends), so a receiver that hangs holds one slot, not many.
const SLOW_ATTEMPT: Duration = Duration::from_secs(2);
/// Claims made in one pass at most, when deliveries of busy connections were
/// put back and others may be due behind them.
const CLAIMS_PER_PASS: usize = 8;
/// How long a shutdown waits to record the attempts it cut short.
const SHUTDOWN_RECORD_WAIT: Duration = Duration::from_secs(2);
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

/// How deliveries are sent and retried.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// The wait after the first failed attempt; it doubles each time.
    pub base: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// An attempt that has not connected to the receiver by then fails.
    pub connect_timeout: Duration,
    /// An attempt that has not had the receiver's answer (its status line and
    /// headers) by then fails, whatever it was doing: connecting, sending, or
    /// waiting for an answer that never comes or comes a byte at a time.
    pub timeout: Duration,
    /// Attempts in flight at once, each of a different connection.
    pub concurrency: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        // 12 attempts, the last about 34 minutes (1 + 2 + … + 1024 s) after the first.
        DeliveryPolicy {
            base: Duration::from_secs(1),
            max_attempts: 12,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

/// Sends the pending deliveries of one database.
///
/// A dispatcher thread claims due deliveries, never more than there are free
/// slots (`concurrency`), and hands each to its connection's *lane*: a thread
/// that sends the connection's deliveries one after another, so a connection
/// has at most one attempt in flight in this process and its webhooks go in
/// the order they were claimed. Attempts block on their own threads, never
/// on the async runtime's, and a shutdown does not wait for them.
pub struct Deliverer {
    db: Store,
    /// The secret of connections without their own.
    default_secret: Option<SecretString>,
    policy: DeliveryPolicy,
    agent: ureq::Agent,
    state: Mutex<Inflight>,
    wake: Condvar,
}

/// What this process holds: the deliveries it claimed and has not settled.
#[derive(Default)]
struct Inflight {
    /// Connections with an attempt in flight.
    lanes: HashMap<String, Lane>,
    /// Deliveries claimed and not settled, in flight or waiting in a lane;
    /// never more than `concurrency`.
    claimed: usize,
    /// Set when an attempt ends: the dispatcher looks again at once.
    woken: bool,
    stopping: bool,
}

struct Lane {
    running: Arc<Running>,
    /// Claimed deliveries of the connection, to send after `running`.
    waiting: VecDeque<Claimed>,
}

struct Claimed {
    delivery: Delivery,
    /// When another worker may claim it again.
    lease_ends: Instant,
}

/// The attempt in flight of a lane.
struct Running {
    delivery: Delivery,
    started: Instant,
    /// Whoever sets it records the attempt's outcome: the lane when the
    /// attempt ends, or a shutdown that cuts it short.
    settled: AtomicBool,
}

impl Running {
    fn new(delivery: Delivery) -> Arc<Self> {
        Arc::new(Running { delivery, started: Instant::now(), settled: AtomicBool::new(false) })
    }

    /// True for the first caller only.
    fn settle(&self) -> bool {
        !self.settled.swap(true, Ordering::SeqCst)
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    /// Worth trying again (5xx, 408, 429, network, timeouts).
    Retry(String),
    /// The receiver refused it (another 4xx), or it cannot be sent.
    GiveUp(String),
}

impl Deliverer {
    pub fn new(db: Store, default_secret: Option<SecretString>, policy: DeliveryPolicy) -> Arc<Self> {
        let policy = DeliveryPolicy {
            concurrency: policy.concurrency.max(1),
            timeout: policy.timeout.max(Duration::from_millis(1)),
            connect_timeout: policy.connect_timeout.min(policy.timeout).max(Duration::from_millis(1)),
            ..policy
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.timeout))
            // One connection per attempt: a receiver that hung once gets a
            // fresh connection, and no idle socket is kept per receiver.
            .max_idle_connections(0)
            .build()
            .into();
        Arc::new(Deliverer {
            db,
            default_secret: default_secret.filter(|s| !s.expose_secret().is_empty()),
            policy,
            agent,
            state: Mutex::new(Inflight::default()),
            wake: Condvar::new(),
        })
    }

    /// Delivers until `shutdown` turns true, then returns without waiting
    /// for the attempts in flight: each is recorded as a failed attempt
    /// (`interrupted: …`), due again after its backoff, and its thread is
    /// left to the process's exit.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let dispatcher = self.clone();
        let started = std::thread::Builder::new().name("webhooks".into()).spawn(move || dispatcher.dispatch());
        if let Err(e) = started {
            tracing::error!(target: "webhooks", "cannot start the deliverer: {e}");
            return;
        }
        let _ = shutdown.wait_for(|stop| *stop).await;
        let (recorded, done) = tokio::sync::oneshot::channel();
        let deliverer = self.clone();
        let stopping = std::thread::Builder::new().name("webhooks-stop".into()).spawn(move || {
            deliverer.stop();
            let _ = recorded.send(());
        });
        if stopping.is_ok() && tokio::time::timeout(SHUTDOWN_RECORD_WAIT, done).await.is_err() {
            tracing::warn!(target: "webhooks", "the attempts in flight could not be recorded in {SHUTDOWN_RECORD_WAIT:?}; they are sent again when their lease ends");
        }
    }

    /// How long a claimed delivery is left to this process: one attempt's
    /// total timeout and a margin. A delivery starts only while at least a
    /// total timeout and [`START_MARGIN`] of its lease are left, so no other
    /// worker (of this process or another) sends it while this one may.
    fn lease(&self) -> Duration {
        self.policy.timeout + LEASE_MARGIN
    }

    fn lock(&self) -> MutexGuard<'_, Inflight> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The dispatcher: a pass every [`POLL`], or as soon as an attempt ends.
    fn dispatch(self: Arc<Self>) {
        // A store that is away is logged when it goes and when it is back,
        // not on every pass (docs/store.md, "When the store fails").
        let mut store_failing = false;
        loop {
            match self.pass() {
                Ok(()) if std::mem::take(&mut store_failing) => {
                    tracing::info!(target: "webhooks", "the store answers again: delivering");
                }
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    if !std::mem::replace(&mut store_failing, true) {
                        tracing::error!(target: "webhooks", "cannot read the pending deliveries (retried every second, logged again when it answers): {e}");
                    }
                }
                Err(e) => tracing::error!(target: "webhooks", "cannot read the pending deliveries: {e}"),
            }
            let mut state = self.lock();
            let deadline = Instant::now() + POLL;
            while !state.woken && !state.stopping {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self.wake.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
            }
            if state.stopping {
                return;
            }
            state.woken = false;
        }
    }

    /// One pass: claims what is due, as many as there are free slots.
    fn pass(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        self.put_back_behind_slow_attempts();
        for _ in 0..CLAIMS_PER_PASS {
            let free = {
                let state = self.lock();
                if state.stopping {
                    return Ok(());
                }
                self.policy.concurrency.saturating_sub(state.claimed)
            };
            if free == 0 {
                return Ok(());
            }
            let lease = self.lease();
            let lease_ends = Instant::now() + lease;
            let due = self.db.deliveries.claim_due(now_us(), lease.as_micros() as i64, free as u32)?;
            let full = due.len() == free;
            let mut put_back = 0;
            for delivery in due {
                if !self.admit(Claimed { delivery, lease_ends }) {
                    put_back += 1;
                }
            }
            // Claim again only if some went back while more may be due
            // behind them (the claim was full).
            if put_back == 0 || !full {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Starts a claimed delivery, or queues it behind its connection's
    /// attempt in flight; false if it was put back (left to its lease).
    fn admit(self: &Arc<Self>, claimed: Claimed) -> bool {
        let mut state = self.lock();
        let connection = claimed.delivery.connection.clone();
        let id = claimed.delivery.id;
        let held = state
            .lanes
            .values()
            .any(|lane| lane.running.delivery.id == id || lane.waiting.iter().any(|c| c.delivery.id == id));
        if state.stopping || held {
            return false;
        }
        match state.lanes.get_mut(&connection) {
            Some(lane) => {
                if lane.running.started.elapsed() >= SLOW_ATTEMPT {
                    tracing::debug!(target: "webhooks", %connection, delivery = id, "waits behind an attempt in flight for {:?}: left to its lease", lane.running.started.elapsed());
                    return false;
                }
                lane.waiting.push_back(claimed);
            }
            None => {
                let running = Running::new(claimed.delivery);
                state.lanes.insert(connection.clone(), Lane { running: running.clone(), waiting: VecDeque::new() });
                let deliverer = self.clone();
                let lane = connection.clone();
                let spawned = std::thread::Builder::new()
                    .name("webhook-attempt".into())
                    .spawn(move || deliverer.run_lane(lane, running));
                if let Err(e) = spawned {
                    tracing::error!(target: "webhooks", "cannot start a delivery: {e}");
                    state.lanes.remove(&connection);
                    return false;
                }
            }
        }
        state.claimed += 1;
        true
    }

    /// Puts back the deliveries waiting behind attempts that have been in
    /// flight for [`SLOW_ATTEMPT`]: a receiver that hangs must not hold the
    /// slots of other connections' deliveries.
    fn put_back_behind_slow_attempts(&self) {
        let mut state = self.lock();
        let mut put_back = 0;
        for (connection, lane) in state.lanes.iter_mut() {
            if !lane.waiting.is_empty() && lane.running.started.elapsed() >= SLOW_ATTEMPT {
                tracing::debug!(target: "webhooks", %connection, "{} deliveries wait behind an attempt in flight for {:?}: left to their lease", lane.waiting.len(), lane.running.started.elapsed());
                put_back += lane.waiting.len();
                lane.waiting.clear();
            }
        }
        state.claimed -= put_back;
    }

    /// A lane: sends `running`, then the connection's deliveries queued
    /// behind it, one at a time.
    fn run_lane(self: Arc<Self>, connection: String, mut running: Arc<Running>) {
        loop {
            let outcome = self.attempt_now(&running.delivery);
            if running.settle() {
                if let Err(e) = self.record(&running.delivery, outcome) {
                    tracing::error!(target: "webhooks", %connection, delivery = running.delivery.id, "cannot record the attempt: {e}");
                }
            }
            let mut state = self.lock();
            state.claimed -= 1;
            state.woken = true;
            self.wake.notify_all();
            let stopping = state.stopping;
            let Some(lane) = state.lanes.get_mut(&connection) else { return };
            let mut forgotten = 0;
            let mut next = None;
            while let Some(claimed) = lane.waiting.pop_front() {
                let left = claimed.lease_ends.saturating_duration_since(Instant::now());
                if stopping || left < self.policy.timeout + START_MARGIN {
                    forgotten += 1;
                    continue;
                }
                next = Some(claimed);
                break;
            }
            match next {
                Some(claimed) => {
                    running = Running::new(claimed.delivery);
                    lane.running = running.clone();
                    state.claimed -= forgotten;
                }
                None => {
                    state.lanes.remove(&connection);
                    state.claimed -= forgotten;
                    return;
                }
            }
        }
    }

    /// Stops the dispatcher and records the attempts in flight as failed
    /// (`interrupted: …`); their threads are not waited for. Deliveries
    /// waiting in a lane, not yet tried, are left to their lease.
    fn stop(&self) {
        let running: Vec<Arc<Running>> = {
            let mut state = self.lock();
            state.stopping = true;
            self.wake.notify_all();
            let waiting: usize = state.lanes.values_mut().map(|lane| std::mem::take(&mut lane.waiting).len()).sum();
            state.claimed -= waiting;
            state.lanes.values().map(|lane| lane.running.clone()).collect()
        };
        for attempt in running {
            if attempt.settle() {
                let error = format!(
                    "interrupted: the host shut down {:.1?} into the attempt, before the receiver answered",
                    attempt.started.elapsed()
                );
                if let Err(e) = self.record(&attempt.delivery, Attempt::Retry(error)) {
                    tracing::error!(target: "webhooks", delivery = attempt.delivery.id, "cannot record the interrupted attempt: {e}");
                }
            }
        }
    }

    fn secret_for(&self, connection: &str) -> Option<SecretString> {
        let own = self.db.connections.secrets(connection).ok().flatten().and_then(|s| s.webhook_secret);
        own.or_else(|| self.default_secret.clone())
    }

    fn attempt_now(&self, delivery: &Delivery) -> Attempt {
        match self.secret_for(&delivery.connection) {
            None => Attempt::Retry(
                "no secret to sign it with: give `serve --webhook-secret` or the connection's own".into(),
            ),
            Some(secret) => self.attempt(delivery, secret.expose_secret()),
        }
    }

    /// Records an attempt's outcome: delivered, due again after its backoff, or given up.
    fn record(&self, delivery: &Delivery, outcome: Attempt) -> Result<(), crate::store::StoreError> {
        let attempts = delivery.attempts + 1;
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
            Err(ureq::Error::Timeout(ureq::Timeout::Connect)) => Attempt::Retry(format!(
                "cannot reach the receiver: no connection within {:?} (--webhook-connect-timeout-secs)",
                self.policy.connect_timeout
            )),
            Err(ureq::Error::Timeout(_)) => Attempt::Retry(format!(
                "the receiver did not answer within {:?} (--webhook-timeout-secs)",
                self.policy.timeout
            )),
            Err(e) => Attempt::Retry(format!("cannot reach the receiver: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that accepts and never answers; keeps its connections.
    fn hanging_receiver() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                held.push(stream);
            }
        });
        url
    }

    fn deliverer(concurrency: usize) -> (Arc<Deliverer>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.sqlite");
        let db = crate::store::open(path.to_str().unwrap(), crate::store::OpenMode::Create).unwrap();
        let policy = DeliveryPolicy { timeout: Duration::from_secs(30), concurrency, ..Default::default() };
        (Deliverer::new(db, Some("secret".into()), policy), dir)
    }

    fn enqueue(deliverer: &Deliverer, connection: &str, url: &str) -> i64 {
        deliverer.db.deliveries.enqueue(connection, None, url, "{}", WebhookFormat::SyncHost).unwrap()
    }

    #[test]
    fn the_lease_outlasts_one_attempt_with_room_to_start() {
        let (deliverer, _dir) = deliverer(4);
        assert!(deliverer.lease() >= deliverer.policy.timeout + START_MARGIN + Duration::from_secs(20));
        assert!(deliverer.lease() < deliverer.policy.timeout * 2 + LEASE_MARGIN, "not a whole batch's worth");
    }

    #[test]
    fn a_pass_claims_no_more_than_its_slots_and_a_hung_connection_keeps_one() {
        let (deliverer, _dir) = deliverer(4);
        let hung = hanging_receiver();
        let first = enqueue(&deliverer, "a", &hung);
        for _ in 0..4 {
            enqueue(&deliverer, "a", &hung);
        }
        enqueue(&deliverer, "b", &hung);
        deliverer.pass().unwrap();
        {
            let state = deliverer.lock();
            assert_eq!(state.claimed, 4, "no more than the slots");
            let a = &state.lanes["a"];
            assert_eq!((a.running.delivery.id, a.waiting.len()), (first, 3), "one attempt of `a` in flight");
            assert_eq!(state.lanes.len(), 1, "`b` was not among the four oldest");
        }
        // `a`'s attempt hangs: what waits behind it goes back to its lease,
        // and the slots go to `b`.
        std::thread::sleep(SLOW_ATTEMPT + Duration::from_millis(100));
        deliverer.pass().unwrap();
        {
            let state = deliverer.lock();
            assert!(state.lanes["a"].waiting.is_empty());
            assert!(state.lanes.contains_key("b"), "b's delivery was claimed past a's");
            assert_eq!(state.claimed, 2);
        }
        enqueue(&deliverer, "c", &hung);
        deliverer.pass().unwrap();
        assert_eq!(deliverer.lock().claimed, 3);

        // A shutdown records the attempts in flight as failed, not waiting for them.
        deliverer.stop();
        let (kept, _) = deliverer.db.deliveries.list("a", None, 10).unwrap();
        let cut = kept.iter().find(|d| d.id == first).unwrap();
        assert_eq!(cut.attempts, 1);
        assert!(cut.last_error.as_deref().unwrap().starts_with("interrupted: the host shut down"), "{cut:?}");
        assert!(kept.iter().filter(|d| d.id != first).all(|d| d.attempts == 0), "the others were never tried");
    }

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
