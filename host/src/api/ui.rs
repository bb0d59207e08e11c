//! The operator's dashboard (docs/ui.md): `GET /ui` and its assets, a page
//! of plain JavaScript embedded in the binary (nothing fetched from elsewhere,
//! no build step). The page holds no data: every figure it shows comes from
//! the API (`/connections…`, `/sync/status`, `/records/`) with the key the
//! page asks for, so the files themselves are served without the key.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles,
//! images and requests from this origin only, no inline script or style, no
//! framing, no form posts), `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiState;
use crate::runtime::Endpoint;

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");
const ICON: &str = include_str!("ui/icon.svg");

/// The policy of every dashboard answer: this origin only, nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes; none when a component declares an endpoint under
/// `/ui` (its records win, and the dashboard is not served).
pub(super) fn routes(endpoints: &[Endpoint]) -> Router<ApiState> {
    if let Some(taken) = endpoints.iter().find(|e| e.path == "/ui" || e.path.starts_with("/ui/")) {
        tracing::warn!(target: "api", "the component serves {}: the dashboard (/ui) is not served", taken.path);
        return Router::new();
    }
    Router::new()
        .route("/ui", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/ui/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/ui/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP) }))
        .route("/ui/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/ui/icon.svg", get(|| async { asset("image/svg+xml", ICON) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{self, OpenMode};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn get(router: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 22).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn router(dir: &tempfile::TempDir, endpoints: Vec<Endpoint>) -> Router {
        let db = store::open(dir.path().join("ui.sqlite").to_str().unwrap(), OpenMode::Create).unwrap();
        super::super::router(ApiState::new(db, Some("k3y".into()), endpoints))
    }

    fn customers() -> Endpoint {
        Endpoint { method: "GET".into(), path: "/customers".into(), model: "Customer".into(), model_schema: None }
    }

    #[tokio::test]
    async fn the_page_is_served_without_the_key_and_the_data_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let router = router(&dir, vec![customers()]);
        for (path, kind) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
            ("/ui/icon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = get(&router, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert!(!body.is_empty());
        }
        for path in ["/connections", "/customers", "/sync/status?syncs=*&provider_config_key=quickbooks"] {
            assert_eq!(get(&router, path).await.0, StatusCode::UNAUTHORIZED, "{path} needs the key");
        }
        assert_eq!(get(&router, "/ui/nothing.js").await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_policy_allows_nothing_inline_nor_from_elsewhere() {
        for directive in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        // The page loads its script and style from files, and has no inline handler or style.
        assert!(INDEX.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert_eq!(INDEX.matches("<script").count(), 1);
        for inline in [" style=", " onclick=", " onload=", "javascript:", "http://", "https://"] {
            assert!(!INDEX.contains(inline), "index.html has {inline}");
        }
        // Data is written as text: the script never parses HTML.
        for parse in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!APP.contains(parse), "app.js uses {parse}");
        }
        assert!(!APP.contains("localStorage"), "the key is kept for the tab only (sessionStorage)");
    }

    #[tokio::test]
    async fn a_component_endpoint_under_ui_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ui = Endpoint { method: "GET".into(), path: "/ui".into(), model: "Thing".into(), model_schema: None };
        let router = router(&dir, vec![ui]);
        // The records endpoint, behind the key, not the page.
        assert_eq!(get(&router, "/ui").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&router, "/ui/app.js").await.0, StatusCode::NOT_FOUND);
    }
}
