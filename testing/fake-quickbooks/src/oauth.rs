//! Intuit's OAuth 2.0 token endpoint, as far as a host that refreshes
//! tokens sees it: `POST /oauth2/v1/tokens/bearer` with HTTP Basic client
//! credentials and `grant_type=refresh_token`. Access tokens expire (one hour
//! by default, wall time); **every** refresh rotates the refresh token and the
//! superseded one is refused from then on (stricter than Intuit, which keeps
//! the old one for a day: a host that loses a rotated token is caught at
//! once); a revoked or unknown one answers `400 {"error": "invalid_grant"}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{lock, FakeQbo};

/// The OAuth state of a fake company.
pub(crate) struct OAuth {
    client_id: String,
    client_secret: String,
    /// The one refresh token that works.
    refresh_token: Option<String>,
    /// Access tokens issued, with when they expire.
    access_tokens: HashMap<String, Instant>,
    lifetime: Duration,
    counter: u64,
    refreshes: usize,
}

/// Whether a bearer token is good for the API.
pub(crate) enum Bearer {
    Valid,
    Expired,
    Unknown,
}

impl OAuth {
    pub(crate) fn new(client_id: &str, client_secret: &str) -> Self {
        OAuth {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            refresh_token: None,
            access_tokens: HashMap::new(),
            lifetime: Duration::from_secs(3600),
            counter: 0,
            refreshes: 0,
        }
    }

    fn mint(&mut self, kind: &str) -> String {
        self.counter += 1;
        // Unguessable enough for a fake, and never equal twice.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("fake-{kind}-{}-{:x}", self.counter, nanos)
    }

    pub(crate) fn issue_refresh_token(&mut self) -> String {
        let token = self.mint("refresh");
        self.refresh_token = Some(token.clone());
        token
    }

    pub(crate) fn bearer(&self, token: &str) -> Bearer {
        match self.access_tokens.get(token) {
            Some(expires) if Instant::now() < *expires => Bearer::Valid,
            Some(_) => Bearer::Expired,
            None => Bearer::Unknown,
        }
    }
}

impl FakeQbo {
    /// Turns the token endpoint on with these client credentials; returns the
    /// first refresh token (as an authorisation would give it).
    pub fn enable_oauth(&self, client_id: &str, client_secret: &str) -> String {
        let mut oauth = OAuth::new(client_id, client_secret);
        let token = oauth.issue_refresh_token();
        *lock(&self.inner.oauth) = Some(oauth);
        token
    }

    /// As [`FakeQbo::enable_oauth`], with a first refresh token the caller
    /// names (a README can then show it); it rotates on use like any other.
    pub fn enable_oauth_with_refresh_token(&self, client_id: &str, client_secret: &str, refresh_token: &str) {
        let mut oauth = OAuth::new(client_id, client_secret);
        oauth.refresh_token = Some(refresh_token.to_owned());
        *lock(&self.inner.oauth) = Some(oauth);
    }

    /// How long access tokens last from now on (an hour by default).
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        if let Some(oauth) = lock(&self.inner.oauth).as_mut() {
            oauth.lifetime = lifetime;
        }
    }

    /// Revokes the refresh token (as a user disconnecting the app does):
    /// every refresh answers `invalid_grant` until [`FakeQbo::reauthorise`].
    pub fn revoke_refresh_tokens(&self) {
        if let Some(oauth) = lock(&self.inner.oauth).as_mut() {
            oauth.refresh_token = None;
        }
    }

    /// A new refresh token, as authorising the app again gives it.
    pub fn reauthorise(&self) -> Option<String> {
        lock(&self.inner.oauth).as_mut().map(OAuth::issue_refresh_token)
    }

    /// Expires every access token issued so far.
    pub fn expire_access_tokens(&self) {
        if let Some(oauth) = lock(&self.inner.oauth).as_mut() {
            let now = Instant::now();
            oauth.access_tokens.values_mut().for_each(|expires| *expires = now);
        }
    }

    /// Successful refreshes so far.
    pub fn token_refreshes(&self) -> usize {
        lock(&self.inner.oauth).as_ref().map_or(0, |o| o.refreshes)
    }

    /// Token requests of any outcome so far.
    pub fn token_requests(&self) -> usize {
        self.inner.token_requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

/// `POST /oauth2/v1/tokens/bearer`.
pub(crate) async fn token(State(fake): State<FakeQbo>, headers: HeaderMap, body: Bytes) -> Response {
    fake.inner.token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut guard = lock(&fake.inner.oauth);
    let Some(oauth) = guard.as_mut() else {
        return oauth_error(StatusCode::NOT_FOUND, "not_enabled", "this fake has no OAuth client (enable_oauth)");
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{}:{}", oauth.client_id, oauth.client_secret);
    if basic.as_deref() != Some(expected.as_str()) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only refresh_token is supported");
    }
    let given = form.get("refresh_token").cloned().unwrap_or_default();
    if oauth.refresh_token.as_deref() != Some(given.as_str()) || given.is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Incorrect or invalid refresh token");
    }
    let access = oauth.mint("access");
    let expires = Instant::now() + oauth.lifetime;
    oauth.access_tokens.insert(access.clone(), expires);
    let refresh = oauth.issue_refresh_token();
    oauth.refreshes += 1;
    Json(json!({
        "token_type": "bearer",
        "access_token": access,
        "expires_in": oauth.lifetime.as_secs(),
        "refresh_token": refresh,
        "x_refresh_token_expires_in": 8_640_000,
    }))
    .into_response()
}
