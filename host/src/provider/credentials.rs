//! Where a connection's bearer token comes from. The token goes into the
//! `Authorization` header and nowhere else: never into logs, errors or the
//! component.

/// Why no token could be had. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The connection has no credentials at all.
    #[error("{0}")]
    Missing(String),
    /// The provider refused to issue a token; the connection needs to be
    /// authorised again by a person.
    #[error("{0}")]
    NeedsReauthorisation(String),
    /// Obtaining a token failed for now (network, 5xx); a later run may succeed.
    #[error("{0}")]
    Unavailable(String),
}

/// A connection's credentials.
pub trait Credentials: Send + Sync {
    /// The access token to send, obtained or refreshed if needed.
    fn access_token(&self) -> Result<String, CredentialError>;
    /// The provider answered 401 to `token`: obtain a new one if possible.
    /// Returns whether retrying with [`Credentials::access_token`] may help.
    fn rejected(&self, token: &str) -> Result<bool, CredentialError>;
}

/// A fixed access token (quick tries, tests): it cannot be refreshed.
pub struct StaticToken {
    token: Option<String>,
}

impl StaticToken {
    pub fn new(token: Option<String>) -> Self {
        StaticToken { token: token.filter(|t| !t.is_empty()) }
    }
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken").field("token", &self.token.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Credentials for StaticToken {
    fn access_token(&self) -> Result<String, CredentialError> {
        self.token.clone().ok_or_else(|| {
            CredentialError::Missing("the connection has no access token (pass --token or set QBO_ACCESS_TOKEN)".into())
        })
    }

    fn rejected(&self, _token: &str) -> Result<bool, CredentialError> {
        Ok(false)
    }
}
