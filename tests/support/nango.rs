//! The real Nango Node SDK (`@nangohq/node`, pinned in `tests/nango/package.json`) as a client of `sync-host`:
//! an app written against Nango must work unchanged, so the tests drive the SDK itself rather than our own idea
//! of the requests it sends. `tests/nango/README.md` lists what each call sends.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Makes one SDK call in a fresh `node tests/nango/sdk.mjs` and returns the line it prints.
///
/// `request` is `{"host", "key", "webhookSigningKey"?, "call", "args": [...]}`. The answer is
/// `{"ok": true, "result"}` (with `"axiosResponse": true` and `result: {status, data}` for the calls that return
/// the raw axios response), `{"ok": false, "status", "data"}` for a non-2xx answer, or `{"ok": false, "error"}`.
/// Panics, with the driver's stderr, when the request is malformed or the driver fails.
pub fn nango_sdk(request: &Value) -> Value {
    super::node_script(sdk_installed(), "sdk.mjs", request)
}

/// The driver's folder, with the locked SDK installed into it by `npm ci` on first use in this process.
fn sdk_installed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::npm_installed("nango", "@nangohq/node", &[]))
}
