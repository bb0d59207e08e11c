//! Many companies behind one address, as a SaaS product's customers each
//! connect their own QuickBooks company (`sync-host fake-qbo --companies N`,
//! `sync-bench connections`). Each realm is a [`FakeQbo`] of its own — its
//! customers, clock, quota, request log and token endpoint — reached the way
//! QuickBooks routes a company, by the realm in the path:
//!
//! | method & path | answer |
//! |---|---|
//! | `… /v3/company/{realm}/…` | that company's answer, as [`FakeQbo`] gives it (an unknown realm: 403 `AuthorizationFault`, as QuickBooks answers) |
//! | `POST /{realm}/oauth2/v1/tokens/bearer` | that company's token endpoint |
//! | `GET /_fake/companies` | the realm ids, as a JSON array, in creation order |
//!
//! Every request waits `latency` first, standing in for the round trip to
//! Intuit's servers (about 150 ms from most places).

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

use crate::{FakeQbo, GenerateOptions};

/// The realm id of the first company; the others count up from it.
const FIRST_REALM: u64 = 9_130_000_000_000_000;

/// Many fake companies on one server.
#[derive(Clone)]
pub struct FakeCompanies {
    inner: Arc<Inner>,
}

struct Inner {
    by_realm: HashMap<String, Company>,
    realm_ids: Vec<String>,
    latency: Duration,
}

struct Company {
    fake: FakeQbo,
    router: Router,
}

impl FakeCompanies {
    /// `count` companies of `customers` generated customers each (that
    /// fraction of them archived), all accepting `Authorization: Bearer
    /// <token>`. Each starts
    /// as a copy of the first (generating a customer costs about 30 µs,
    /// copying one a few), then changes on its own.
    pub fn generate(count: usize, customers: usize, archived_fraction: f64, token: &str) -> Self {
        let mut by_realm = HashMap::with_capacity(count);
        let mut realm_ids = Vec::with_capacity(count);
        let mut first: Option<FakeQbo> = None;
        for n in 0..count {
            let realm = (FIRST_REALM + n as u64).to_string();
            let fake = FakeQbo::new(&realm, token);
            match &first {
                Some(first) => fake.copy_customers_from(first),
                None => {
                    fake.seed_generated(customers, &GenerateOptions { archived_fraction, ..Default::default() });
                    first = Some(fake.clone());
                }
            }
            by_realm.insert(realm.clone(), Company { router: fake.router(), fake });
            realm_ids.push(realm);
        }
        FakeCompanies { inner: Arc::new(Inner { by_realm, realm_ids, latency: Duration::ZERO }) }
    }

    /// Waits `latency` before answering each request.
    pub fn with_latency(self, latency: Duration) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("set the latency before serving"));
        inner.latency = latency;
        FakeCompanies { inner: Arc::new(inner) }
    }

    /// The realm ids, in creation order.
    pub fn realm_ids(&self) -> &[String] {
        &self.inner.realm_ids
    }

    /// The company `realm`, to edit or inspect.
    pub fn company(&self, realm: &str) -> Option<&FakeQbo> {
        self.inner.by_realm.get(realm).map(|c| &c.fake)
    }

    /// Turns on every company's token endpoint for this client, each
    /// accepting `first_refresh_token` once (then rotating on its own).
    pub fn enable_oauth(&self, client_id: &str, client_secret: &str, first_refresh_token: &str) {
        for company in self.inner.by_realm.values() {
            company.fake.enable_oauth_with_refresh_token(client_id, client_secret, first_refresh_token);
        }
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Serves on `listener` inside the caller's runtime until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(listener, self.router()).await?;
        Ok(())
    }
}

/// Where a request goes: the company its path names, with the path that
/// company's own router expects.
enum Route<'a> {
    List,
    Company { realm: &'a str, path_and_query: Option<String> },
    Unknown,
}

fn route(uri: &Uri) -> Route<'_> {
    let path = uri.path();
    if path == "/_fake/companies" {
        return Route::List;
    }
    if let Some(rest) = path.strip_prefix("/v3/company/") {
        let realm = rest.split('/').next().unwrap_or_default();
        return Route::Company { realm, path_and_query: None };
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next(), parts.next()) {
        (Some(realm), Some("oauth2/v1/tokens/bearer")) => {
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            Route::Company { realm, path_and_query: Some(format!("/oauth2/v1/tokens/bearer{query}")) }
        }
        _ => Route::Unknown,
    }
}

async fn dispatch(State(companies): State<FakeCompanies>, mut request: Request) -> Response {
    if !companies.inner.latency.is_zero() {
        tokio::time::sleep(companies.inner.latency).await;
    }
    let uri = request.uri().clone();
    let (realm, path_and_query) = match route(&uri) {
        Route::List => return Json(companies.realm_ids()).into_response(),
        Route::Unknown => {
            return (StatusCode::NOT_FOUND, Json(json!({"error": format!("no such path: {}", uri.path())})))
                .into_response()
        }
        Route::Company { realm, path_and_query } => (realm, path_and_query),
    };
    let Some(company) = companies.inner.by_realm.get(realm) else {
        // The first company's answer to a realm it does not know: QuickBooks' 403.
        let first = companies.inner.realm_ids.first().and_then(|r| companies.inner.by_realm.get(r));
        return match first {
            Some(first) => first.router.clone().oneshot(request).await.unwrap_or_else(|never| match never {}),
            None => StatusCode::FORBIDDEN.into_response(),
        };
    };
    if let Some(path_and_query) = path_and_query {
        match path_and_query.parse() {
            Ok(rewritten) => *request.uri_mut() = rewritten,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    company.router.clone().oneshot(request).await.unwrap_or_else(|never| match never {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    async fn get(router: &Router, uri: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut request = axum::http::Request::builder().uri(uri).header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn each_realm_is_a_company_of_its_own_and_the_list_names_them_all() {
        let companies = FakeCompanies::generate(3, 4, 0.0, "t");
        let router = companies.router();
        let (status, list) = get(&router, "/_fake/companies", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list, json!(companies.realm_ids()));
        let [first, second, _] = companies.realm_ids() else { panic!("three") };
        companies.company(first).unwrap().insert(json!({"DisplayName": "Only in the first"}));
        let query = "select%20*%20from%20Customer%20maxresults%201000";
        let (status, body) = get(&router, &format!("/v3/company/{first}/query?query={query}"), Some("t")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["QueryResponse"]["Customer"].as_array().map(Vec::len), Some(5), "{body}");
        let (_, body) = get(&router, &format!("/v3/company/{second}/query?query={query}"), Some("t")).await;
        assert_eq!(body["QueryResponse"]["Customer"].as_array().unwrap().len(), 4, "its own customers");
        let (status, _) = get(&router, &format!("/v3/company/{first}/query?query={query}"), Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = get(&router, &format!("/v3/company/1/query?query={query}"), Some("t")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "an unknown realm, as QuickBooks answers it: {body}");
        assert_eq!(companies.company(second).unwrap().query_requests(), 1, "each company logs its own requests");
    }
}
