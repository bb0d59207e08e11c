//! The real Nango Node SDK (`@nangohq/node`, pinned in `tests/nango/package.json`) as a client of `sync-host`:
//! an app written against Nango must work unchanged, so the tests drive the SDK itself rather than our own idea
//! of the requests it sends. `tests/nango/README.md` lists what each call sends.

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Makes one SDK call in a fresh `node tests/nango/sdk.mjs` and returns the line it prints.
///
/// `request` is `{"host", "key", "webhookSigningKey"?, "call", "args": [...]}`. The answer is
/// `{"ok": true, "result"}` (with `"axiosResponse": true` and `result: {status, data}` for the calls that return
/// the raw axios response), `{"ok": false, "status", "data"}` for a non-2xx answer, or `{"ok": false, "error"}`.
/// Panics, with the driver's stderr, when the request is malformed or the driver fails.
pub fn nango_sdk(request: &Value) -> Value {
    let driver = sdk_installed().join("sdk.mjs");
    let mut child = Command::new("node")
        .arg(&driver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node runs {} (Node.js >= 20 must be on PATH): {e}", driver.display()));
    // Dropping stdin after the write closes it: the driver reads to the end before it calls the SDK.
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).expect("the request reaches sdk.mjs");
    let output = child.wait_with_output().expect("sdk.mjs finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sdk.mjs failed ({}) on {request}:\n{stderr}{stdout}", output.status);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("sdk.mjs printed no JSON line ({e}):\n{stdout}\n{stderr}"))
}

/// The driver's folder, with the locked SDK installed into it by `npm ci` on first use in this process.
fn sdk_installed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("nango");
        if !dir.join("node_modules/@nangohq/node").exists() {
            let npm_ci = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).output();
            let output = npm_ci.unwrap_or_else(|e| panic!("npm runs (it comes with Node.js >= 20, on PATH): {e}"));
            assert!(
                output.status.success(),
                "`npm ci` in {} failed:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir
    })
}
