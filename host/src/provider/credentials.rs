//! Where a connection's bearer token comes from. The token goes into the
//! `Authorization` header and nowhere else: never into logs, errors or the
//! component.

use secrecy::{ExposeSecret, SecretString};

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

/// A connection's credentials. (`Debug` never shows a secret: they are kept
/// as `SecretString`.)
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// The access token to send, obtained or refreshed if needed.
    fn access_token(&self) -> Result<String, CredentialError>;
    /// The provider answered 401 to `token`: obtain a new one if possible.
    /// Returns whether retrying with [`Credentials::access_token`] may help.
    fn rejected(&self, token: &str) -> Result<bool, CredentialError>;
}

/// A fixed access token (quick tries, tests): it cannot be refreshed.
#[derive(Debug)]
pub struct StaticToken {
    token: Option<SecretString>,
}

impl StaticToken {
    pub fn new(token: Option<String>) -> Self {
        StaticToken { token: token.filter(|t| !t.is_empty()).map(SecretString::from) }
    }
}

impl Credentials for StaticToken {
    fn access_token(&self) -> Result<String, CredentialError> {
        self.token.as_ref().map(|t| t.expose_secret().to_owned()).ok_or_else(|| {
            CredentialError::Missing("the connection has no access token (pass --token or set QBO_ACCESS_TOKEN)".into())
        })
    }

    fn rejected(&self, _token: &str) -> Result<bool, CredentialError> {
        Ok(false)
    }
}
