//! Node.js programs the tests drive (Nango's SDK in `tests/nango`, the
//! browser driver in `tests/ui`): each folder's locked packages installed by
//! `npm ci` on first use, and a script run with one JSON value on its stdin
//! whose last line of output is its JSON answer.

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `tests/<folder>`, with its locked packages installed (`npm ci`, with
/// `env`) unless `node_modules/<package>` is there already.
pub fn npm_installed(folder: &str, package: &str, env: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    if !dir.join("node_modules").join(package).exists() {
        let output = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("npm runs (it comes with Node.js >= 20, on PATH): {e}"));
        assert!(
            output.status.success(),
            "`npm ci` in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    dir
}

/// Runs `node <dir>/<script>` in `dir` with `input` on its stdin (closed
/// after it: the script reads to the end) and returns the JSON of its last
/// line. Panics, with its output, when it fails or prints no JSON line.
pub fn node_script(dir: &Path, script: &str, input: &Value) -> Value {
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node runs {script} (Node.js >= 20 must be on PATH): {e}"));
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).expect("the input reaches the script");
    let output = child.wait_with_output().expect("the script finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}) on {input}:\n{stderr}{stdout}", output.status);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed no JSON line ({e}):\n{stdout}\n{stderr}"))
}
