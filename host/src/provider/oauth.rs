//! OAuth 2.0 credentials of a stored connection (docs/connections.md,
//! "OAuth"): the host obtains access tokens with the refresh token, refreshes
//! them shortly before they expire and once when the provider answers 401,
//! and stores a rotated refresh token, in one transaction with the new access
//! token, **before** it uses that access token, so a crash right after a
//! refresh never loses the connection. Refreshes of one connection never
//! overlap, across processes too (the store's refresh lock). A refresh token
//! the provider refuses (`invalid_grant`, `invalid_client`) marks the
//! connection as needing re-authorisation: no retry storm, nothing stored is
//! touched.

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{ClientId, ClientSecret, RefreshToken, RequestTokenError, TokenResponse, TokenUrl};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Mutex;
use std::time::Duration;

use super::credentials::{CredentialError, Credentials};
use crate::store::{ConnectionStatus, ConnectionUpdate, Store, StoredCredentials, Tokens};

/// Refresh this long before an access token expires (or, for tokens that
/// live less than 20 minutes, when a quarter of their life is left).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// When the provider does not say how long a token lasts.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A live access token.
#[derive(Debug, Clone)]
struct Access {
    token: SecretString,
    issued_us: i64,
    expires_us: i64,
}

impl Access {
    fn refresh_at_us(&self) -> i64 {
        let margin = (REFRESH_MARGIN.as_micros() as i64).min((self.expires_us - self.issued_us) / 4);
        self.expires_us - margin
    }
}

/// The credentials of one stored OAuth connection.
#[derive(Debug)]
pub struct OAuthCredentials {
    connection: String,
    db: Store,
    agent: ureq::Agent,
    cached: Mutex<Option<Access>>,
    /// A token the provider refused with 401: never used again.
    refused: Mutex<Option<SecretString>>,
}

fn now_us() -> i64 {
    crate::time::now_us()
}

impl OAuthCredentials {
    pub fn new(connection: &str, db: Store) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        OAuthCredentials {
            connection: connection.to_owned(),
            db,
            agent,
            cached: Mutex::new(None),
            refused: Mutex::new(None),
        }
    }

    fn usable(&self, access: &Access) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.as_ref().map(|t| t.expose_secret()) != Some(access.token.expose_secret())
            && access.refresh_at_us() > now_us()
    }

    fn store_error(error: crate::store::StoreError) -> CredentialError {
        CredentialError::Unavailable(format!("cannot read the connection's credentials: {error}"))
    }

    /// Refreshes under the connection's refresh lock. Another process may have
    /// refreshed while this one waited: then its stored token is used.
    fn refresh(&self) -> Result<Access, CredentialError> {
        let _lock = self.db.locks.lock_refresh(&self.connection).map_err(Self::store_error)?;
        let stored = self.db.connections.credentials(&self.connection).map_err(Self::store_error)?;
        let Some(StoredCredentials::OAuth {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            access_token,
            access_expires_us,
            access_issued_us,
        }) = stored
        else {
            return Err(CredentialError::Missing(format!("connection `{}` has no OAuth credentials", self.connection)));
        };
        if let (Some(token), Some(expires_us)) = (access_token, access_expires_us) {
            let access = Access { token, issued_us: access_issued_us.unwrap_or(expires_us), expires_us };
            if self.usable(&access) {
                return Ok(access);
            }
        }
        let client = BasicClient::new(ClientId::new(client_id))
            .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_owned()))
            .set_token_uri(
                TokenUrl::new(token_url.clone())
                    .map_err(|e| CredentialError::Missing(format!("the token URL `{token_url}` is not a URL: {e}")))?,
            );
        let http = |request: oauth2::HttpRequest| -> Result<oauth2::HttpResponse, ureq::Error> {
            let mut response = self.agent.run(request)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.body_mut().read_to_vec()?;
            let mut answer = oauth2::HttpResponse::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        };
        let result =
            client.exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned())).request(&http);
        match result {
            Ok(response) => {
                let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
                let issued_us = now_us();
                let tokens = Tokens {
                    access_token: response.access_token().secret().as_str().into(),
                    access_expires_us: issued_us + lifetime.as_micros() as i64,
                    refresh_token: response.refresh_token().map(|r| r.secret().as_str().into()),
                };
                // Stored before it is used: a crash from here on keeps the rotated token.
                self.db
                    .connections
                    .save_tokens(&self.connection, &tokens)
                    .map_err(|e| CredentialError::Unavailable(format!("cannot store the refreshed tokens: {e}")))?;
                crate::metrics::token_refresh("success");
                tracing::info!(
                    target: "oauth",
                    connection = %self.connection,
                    rotated = tokens.refresh_token.is_some(),
                    "access token refreshed"
                );
                Ok(Access { token: tokens.access_token, issued_us, expires_us: tokens.access_expires_us })
            }
            Err(RequestTokenError::ServerResponse(error))
                if matches!(
                    error.error(),
                    BasicErrorResponseType::InvalidGrant | BasicErrorResponseType::InvalidClient
                ) =>
            {
                let why = format!(
                    "the provider refused to refresh the access token ({}{}): authorise the connection again \
                     (`sync-host connections add {} --refresh-token …` after `connections remove`)",
                    error.error().as_ref(),
                    error.error_description().map(|d| format!(": {d}")).unwrap_or_default(),
                    self.connection
                );
                let update = ConnectionUpdate {
                    status: Some(ConnectionStatus::NeedsReauth),
                    status_message: Some(Some(why.clone())),
                    ..Default::default()
                };
                crate::metrics::token_refresh("refused");
                if let Err(e) = self.db.connections.update(&self.connection, &update) {
                    tracing::error!(target: "oauth", connection = %self.connection, "cannot mark the connection: {e}");
                }
                Err(CredentialError::NeedsReauthorisation(why))
            }
            Err(other) => {
                crate::metrics::token_refresh("failed");
                Err(unavailable(other))
            }
        }
    }
}

/// A refresh that failed for now (network, 5xx, a malformed answer).
fn unavailable(error: RequestTokenError<ureq::Error, oauth2::basic::BasicErrorResponse>) -> CredentialError {
    match error {
        RequestTokenError::ServerResponse(error) => {
            CredentialError::Unavailable(format!("the token endpoint answered {}", error.error().as_ref()))
        }
        RequestTokenError::Request(e) => CredentialError::Unavailable(format!("cannot reach the token endpoint: {e}")),
        // Neither the body nor the parser's message is quoted: either
        // could hold a token. Where it went wrong is enough.
        RequestTokenError::Parse(e, _) => {
            let json = e.inner();
            let what = match json.classify() {
                serde_json::error::Category::Data => format!("JSON, but not a token answer (at `{}`)", e.path()),
                _ => format!("not JSON (line {}, column {})", json.line(), json.column()),
            };
            CredentialError::Unavailable(format!(
                "the token endpoint's answer is not what OAuth 2.0 says: it is {what}"
            ))
        }
        RequestTokenError::Other(message) => CredentialError::Unavailable(message),
    }
}

impl Credentials for OAuthCredentials {
    fn access_token(&self) -> Result<String, CredentialError> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(access) = cached.filter(|a| self.usable(a)) {
            return Ok(access.token.expose_secret().to_owned());
        }
        let access = self.refresh()?;
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(access.clone());
        Ok(access.token.expose_secret().to_owned())
    }

    fn rejected(&self, token: &str) -> Result<bool, CredentialError> {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.into());
        Ok(true)
    }
}
