//! Talking to a connection's provider on a component's behalf: credentials,
//! pacing under the provider's quota, retries within a time budget
//! (docs/architecture.md, "Provider"). The `proxy` capability checks what the
//! component asks for and hands it here.

pub mod client;
pub mod credentials;
pub mod oauth;
pub mod pacing;
pub mod retry;

pub use client::{ProviderClient, ProviderError, ProviderRequest, ProviderResponse};
pub use credentials::{CredentialError, Credentials, StaticToken};
pub use oauth::OAuthCredentials;
pub use pacing::{Pacer, Pacers, Quota};
pub use retry::RetryPolicy;
