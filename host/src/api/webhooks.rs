//! Webhooks in (docs/webhooks.md): a provider's change notifications at
//! `POST /webhooks/<provider>`. The provider module says how they are signed
//! and read (crate::providers); here, for any provider: the signature is
//! verified in constant time against the verifier tokens (the server's, and
//! connections' own); a notification runs only the connections of the app
//! whose token signed it; each connection of a notified account gets one
//! incremental run soon: notifications only mark it, and the scheduler runs
//! it once they have been quiet for a moment, so a burst makes one run.
//! Answered at once: providers want an answer within seconds.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use std::collections::BTreeSet;

use super::{internal, store_failed, ApiError, ApiState};
use crate::providers::Provider;

/// The answer to a notification that verified.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Accepted {
    /// Always true.
    #[schema(schema_with = always_true)]
    accepted: bool,
    /// The connections marked to run.
    connections: BTreeSet<String>,
}

fn always_true() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Boolean)
        .enum_values(Some([true]))
        .description(Some("Always true."))
        .build()
}

fn unauthorized(provider: &dyn Provider) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "invalid_signature",
        message: format!("`{}` does not verify with the verifier token", provider.signature_header()),
    }
}

/// `POST /webhooks/<provider>`, routed for each provider the host knows
/// (any other is the router's 404).
pub(super) async fn notification(
    State(state): State<ApiState>,
    provider: &'static dyn Provider,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = super::request_body(body)?;
    let signature = headers.get(provider.signature_header()).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let models = state.endpoints.iter().map(|e| e.model.to_ascii_lowercase()).collect::<BTreeSet<_>>();
    let global = state.control.verifier_token.clone();
    let db = state.db.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Accepted, ApiError> {
        let Some(signature) = signature else {
            crate::metrics::notification("rejected");
            return Err(unauthorized(provider));
        };
        // Which app signed it: the server's token (None) or a connection's
        // own. Only that app's connections are run.
        let mut signers: Vec<Option<String>> = Vec::new();
        if global.as_deref().is_some_and(|token| provider.verify(token, &body, &signature)) {
            signers.push(None);
        }
        let own_tokens = db.connections.verifier_tokens().map_err(store_failed)?;
        signers.extend(
            own_tokens
                .iter()
                .map(|token| token.expose_secret())
                .filter(|token| provider.verify(token, &body, &signature))
                .map(|token| Some(token.to_owned())),
        );
        if signers.is_empty() {
            crate::metrics::notification("rejected");
            tracing::warn!(target: "webhooks", provider = provider.name(), "a notification with a bad signature was refused");
            return Err(unauthorized(provider));
        }
        let notified =
            provider.read_notification(&body).map_err(|why| ApiError::bad_request("invalid_notification", why))?;
        let now = crate::time::now_us();
        let connections = &db.connections;
        let mut marked = BTreeSet::new();
        for (account, entity) in notified.iter().filter(|(_, entity)| models.contains(&entity.to_ascii_lowercase())) {
            let mut ids = Vec::new();
            for signer in &signers {
                let route = crate::store::NotificationRoute {
                    provider: provider.name(),
                    account_key: provider.account_key(),
                    account,
                };
                ids.extend(connections.notify(&route, now, signer.as_deref()).map_err(store_failed)?);
            }
            if ids.is_empty() {
                tracing::info!(target: "webhooks", provider = provider.name(), account = %account, entity = %entity, "notification for an account no connection syncs: ignored");
            }
            marked.extend(ids);
        }
        crate::metrics::notification(if marked.is_empty() { "ignored" } else { "accepted" });
        Ok(Accepted { accepted: true, connections: marked })
    })
    .await
    .map_err(internal)??;
    if let Some(waker) = &state.control.waker {
        waker.notify_one();
    }
    Ok((StatusCode::OK, Json(answer)).into_response())
}
