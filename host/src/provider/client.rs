//! The HTTP client of one connection's provider: base URL, credentials,
//! pacing and retries. It never logs or returns a token.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::credentials::{CredentialError, Credentials};
use super::pacing::Pacer;
use super::retry::{RetryPolicy, Retryable};

/// Characters left as they are in query components (RFC 3986 unreserved).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// How often a wait before a retry checks whether to stop.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// A request relative to the provider's base URL, already checked.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub retry: bool,
}

/// The provider's answer to the last attempt.
#[derive(Debug, Clone)]
pub struct ProviderResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// Why a request produced no response. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("timeout: {0}")]
    Timeout(String),
    #[error("connection failed: {0}")]
    ConnectionFailed(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The request cannot be sent as given (the capability's checks let
    /// nothing like that through); never retried.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The body is larger than the caller allows.
    #[error("the response body is larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The caller asked to stop (the host is shutting down) while waiting to
    /// retry.
    #[error("interrupted while waiting to retry")]
    Interrupted,
}

/// What one request cost in waiting, for the run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waits {
    /// Retries after a 429.
    pub throttled: u32,
    /// Time spent waiting before retries and for the pacer.
    pub waited: Duration,
}

/// Sends requests to one provider with one connection's credentials.
#[derive(Debug)]
pub struct ProviderClient {
    base_url: String,
    credentials: Arc<dyn Credentials>,
    agent: ureq::Agent,
    policy: RetryPolicy,
    pacer: Arc<Pacer>,
    /// How long to wait after a 429 without `Retry-After` (the component's advice).
    throttle_wait: Duration,
}

/// Open connections an agent keeps for reuse.
const IDLE_CONNECTIONS: usize = 64;

/// An HTTP client for the host's own requests (to a provider, to a webhook
/// receiver): every status is an answer to look at, not an error; no
/// redirects (a token must not follow one elsewhere); one deadline per
/// request, connection included.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        // Many connections of one provider share its host: keep enough open
        // for a scheduler's workers (ureq's default is 3 per host).
        .max_idle_connections(IDLE_CONNECTIONS)
        .max_idle_connections_per_host(IDLE_CONNECTIONS)
        .build()
        .into()
}

impl ProviderClient {
    /// `base_url` like `https://api.provider.example` (a trailing `/` is ignored).
    pub fn new(
        base_url: &str,
        credentials: Arc<dyn Credentials>,
        policy: RetryPolicy,
        pacer: Arc<Pacer>,
        throttle_wait: Duration,
    ) -> anyhow::Result<Self> {
        Self::with_agent(http_agent(policy.timeout), base_url, credentials, policy, pacer, throttle_wait)
    }

    /// Like [`ProviderClient::new`], sending through `agent` (made by
    /// [`http_agent`] with the policy's timeout): runs that share one keep
    /// its pool of open connections, and with HTTPS its TLS set-up, instead
    /// of connecting afresh each run.
    pub fn with_agent(
        agent: ureq::Agent,
        base_url: &str,
        credentials: Arc<dyn Credentials>,
        policy: RetryPolicy,
        pacer: Arc<Pacer>,
        throttle_wait: Duration,
    ) -> anyhow::Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            anyhow::bail!("base URL `{base_url}` must start with http:// or https://");
        }
        Ok(ProviderClient { base_url, credentials, agent, policy, pacer, throttle_wait })
    }

    /// Sends a request, retrying as the policy allows but never waiting past
    /// `not_after` (the run's deadline), reading at most `max_body` bytes of
    /// the answer. A wait before a retry ends early with
    /// [`ProviderError::Interrupted`] once `interrupted` says so (a shutdown
    /// must not wait out a throttle of minutes). Returns the answer and what
    /// it cost.
    pub fn send(
        &self,
        request: &ProviderRequest,
        max_body: u64,
        not_after: Option<Instant>,
        interrupted: &dyn Fn() -> bool,
    ) -> (Result<ProviderResponse, ProviderError>, Waits) {
        let mut waits = Waits::default();
        let result = self.send_counting(request, max_body, not_after, interrupted, &mut waits);
        (result, waits)
    }

    fn send_counting(
        &self,
        request: &ProviderRequest,
        max_body: u64,
        not_after: Option<Instant>,
        interrupted: &dyn Fn() -> bool,
        waits: &mut Waits,
    ) -> Result<ProviderResponse, ProviderError> {
        let budget_end = Instant::now() + self.policy.budget;
        let deadline = not_after.map_or(budget_end, |run_end| run_end.min(budget_end));
        let url = self.url(request);
        let mut token = self.credentials.access_token().map_err(unauthorized)?;
        let mut refreshed = false;
        let mut throttled_in_a_row = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (permit, paced) = self.pacer.acquire();
            waits.waited += paced;
            let outcome = self.attempt(request, &url, &token, max_body);
            drop(permit);
            if let Ok(response) = &outcome {
                // One refresh per request on a 401: a token that expired
                // between the check and the request, or one revoked upstream.
                if response.status == 401 && !refreshed && self.credentials.rejected(&token).map_err(unauthorized)? {
                    refreshed = true;
                    token = self.credentials.access_token().map_err(unauthorized)?;
                    continue;
                }
            }
            let retryable = match &outcome {
                Ok(response) if response.status == 429 => {
                    throttled_in_a_row += 1;
                    Some(Retryable::Throttled { retry_after: retry_after(&response.headers) })
                }
                Ok(response) if response.status >= 500 => {
                    Some(Retryable::ServerError { retry_after: retry_after(&response.headers) })
                }
                Err(ProviderError::Timeout(_) | ProviderError::ConnectionFailed(_)) => Some(Retryable::Failed),
                _ => None,
            };
            let Some(last) = retryable.filter(|_| request.retry) else {
                return outcome.map(|response| ProviderResponse { attempts: attempt, ..response });
            };
            if !matches!(last, Retryable::Throttled { retry_after: None }) {
                throttled_in_a_row = 0;
            }
            let jitter = rand::rng().random_range(0.5..=1.0);
            let wait = self.policy.wait(last, attempt, throttled_in_a_row, self.throttle_wait, jitter);
            if Instant::now() + wait > deadline {
                tracing::warn!(
                    target: "proxy",
                    attempt,
                    "{} {}: giving up, the retry budget of {:?} would run out before the next attempt",
                    request.method.as_str(),
                    request.path,
                    self.policy.budget
                );
                return outcome.map(|response| ProviderResponse { attempts: attempt, ..response });
            }
            match &outcome {
                Ok(response) => tracing::warn!(
                    target: "proxy",
                    attempt,
                    "{} {}: provider answered {}; retrying in {wait:?}",
                    request.method.as_str(),
                    request.path,
                    response.status
                ),
                Err(error) => tracing::warn!(
                    target: "proxy",
                    attempt,
                    "{} {}: {error}; retrying in {wait:?}",
                    request.method.as_str(),
                    request.path
                ),
            }
            if matches!(last, Retryable::Throttled { .. }) {
                waits.throttled += 1;
            }
            waits.waited += wait;
            let wake_at = Instant::now() + wait;
            loop {
                if interrupted() {
                    return Err(ProviderError::Interrupted);
                }
                let left = wake_at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(INTERRUPT_POLL));
            }
        }
    }

    fn url(&self, request: &ProviderRequest) -> String {
        let mut url = format!("{}{}", self.base_url, request.path);
        for (index, (key, value)) in request.query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.extend(utf8_percent_encode(key, QUERY));
            url.push('=');
            url.extend(utf8_percent_encode(value, QUERY));
        }
        url
    }

    fn attempt(
        &self,
        request: &ProviderRequest,
        url: &str,
        token: &str,
        max_body: u64,
    ) -> Result<ProviderResponse, ProviderError> {
        let mut builder = ureq::http::Request::builder().method(request.method.as_str()).uri(url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = builder.header("Authorization", format!("Bearer {token}"));
        let http_request = builder
            .body(request.body.clone().unwrap_or_default())
            .map_err(|e| ProviderError::InvalidRequest(format!("cannot build the request: {e}")))?;
        let mut response = self.agent.run(http_request).map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response.body_mut().with_config().limit(max_body).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => ProviderError::BodyTooLarge(max_body),
            other => classify(&other),
        })?;
        Ok(ProviderResponse { status, headers, body, attempts: 1 })
    }
}

fn unauthorized(error: CredentialError) -> ProviderError {
    ProviderError::Unauthorized(error.to_string())
}

fn classify(error: &ureq::Error) -> ProviderError {
    match error {
        ureq::Error::Timeout(_) => ProviderError::Timeout(error.to_string()),
        _ => ProviderError::ConnectionFailed(error.to_string()),
    }
}

/// `Retry-After` as seconds (what providers mostly send) or an HTTP date.
fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let value = headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.trim())?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{pacing::Quota, StaticToken};

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let headers = vec![("retry-after".to_string(), "2".to_string())];
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let past = vec![("retry-after".to_string(), "Wed, 21 Oct 2015 07:28:00 GMT".to_string())];
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        assert_eq!(retry_after(&[]), None);
    }

    #[test]
    fn a_wait_to_retry_ends_when_the_caller_stops() {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        // A provider that throttles every request for a minute.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let answered = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = [0; 4096];
                let _ = stream.read(&mut request);
                let _ =
                    stream.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nContent-Length: 0\r\n\r\n");
                // The host is told to shut down once the request was answered.
                answered.store(true, Ordering::SeqCst);
            }
        });
        let client = ProviderClient::new(
            &base,
            Arc::new(StaticToken::new(Some("t".into()))),
            RetryPolicy::default(),
            Arc::new(Pacer::new(Quota::default())),
            Duration::ZERO,
        )
        .unwrap();
        let request = ProviderRequest {
            method: Method::Get,
            path: "/v3/company/1/query".into(),
            query: vec![],
            headers: vec![],
            body: None,
            retry: true,
        };
        let (result, waits) = client.send(&request, 1 << 20, None, &|| stop.load(Ordering::SeqCst));
        assert_eq!(result.unwrap_err(), ProviderError::Interrupted);
        assert_eq!(waits.throttled, 1, "it was waiting out the throttle");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let client = ProviderClient::new(
            "http://127.0.0.1:1",
            Arc::new(StaticToken::new(Some("s3cret".into()))),
            RetryPolicy::default(),
            Arc::new(Pacer::new(Quota::default())),
            Duration::ZERO,
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
    }
}
