//! What is particular to a provider, kept at the edge of the generic host
//! (docs/architecture.md): how its change notifications are signed and
//! read, which configuration key names the account a notification is about,
//! and its OAuth token endpoint. The layers below (capabilities, runtime,
//! runs, store, service, the API's core) name no provider; each stored
//! connection names its provider, and the API routes `POST
//! /webhooks/<provider>` to the module of that name.

use std::collections::BTreeSet;

pub mod quickbooks;

/// A provider the host knows.
pub trait Provider: Send + Sync {
    /// Its name: in `/webhooks/<name>`, in `connections add --provider`, in
    /// the store.
    fn name(&self) -> &'static str;
    /// The OAuth token endpoint a connection uses unless told otherwise.
    fn default_token_url(&self) -> &'static str;
    /// The configuration key whose value is the account (company) its
    /// notifications name; the store finds a notification's connections by it.
    fn account_key(&self) -> &'static str;
    /// The request header carrying a notification's signature.
    fn signature_header(&self) -> &'static str;
    /// Whether `signature` signs `body` under the verifier `token`; constant time.
    fn verify(&self, token: &str, body: &[u8], signature: &str) -> bool;
    /// The (account, entity) pairs a verified notification names, or why it
    /// cannot be read.
    fn read_notification(&self, body: &[u8]) -> Result<BTreeSet<(String, String)>, String>;
}

/// Every provider the host knows.
pub fn all() -> &'static [&'static dyn Provider] {
    &[&quickbooks::QuickBooks]
}

/// The provider called `name`, if the host knows it.
pub fn by_name(name: &str) -> Option<&'static dyn Provider> {
    all().iter().copied().find(|p| p.name() == name)
}

/// The provider of a connection added without naming one: the only one
/// this host has.
pub fn default_provider() -> &'static dyn Provider {
    all()[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_found_by_their_name() {
        for provider in all() {
            assert_eq!(by_name(provider.name()).map(|p| p.name()), Some(provider.name()));
        }
        assert!(by_name("nobody").is_none());
        assert_eq!(default_provider().name(), all()[0].name());
    }
}
