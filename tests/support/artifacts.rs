//! What the tests run, built once per test process: the components (the
//! guest, the conformance and hostile ones), the `sync-host` binary, the
//! compiled runtime, and the Node host's dependencies.

#[allow(unused_imports)]
use super::*;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .args(args)
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// The guest component, built with the same command a user runs.
pub fn guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "quickbooks-customers"]);
        workspace().join("target/wasm32-wasip2/release/quickbooks_customers.wasm")
    })
}

/// The conformance component (`testing/conformance`), built like the guest.
pub fn conformance_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "conformance-component"]);
        workspace().join("target/wasm32-wasip2/release/conformance_component.wasm")
    })
}

/// The hostile component (`testing/hostile`), built like the guest.
pub fn hostile_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        cargo_build(&["--target", "wasm32-wasip2", "-p", "hostile-component"]);
        workspace().join("target/wasm32-wasip2/release/hostile_component.wasm")
    })
}

/// The Node host's folder.
pub fn node_dir() -> PathBuf {
    workspace().join("host/node")
}

/// Fails with a clear message when Node.js is missing, and installs the Node
/// host's locked dependencies on first use.
pub fn node_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let version = Command::new("node").arg("--version").output();
        match version {
            Ok(out) if out.status.success() => {}
            _ => panic!(
                "the Node host's tests need Node.js >= 20 on PATH (`node --version` failed); install it and rerun"
            ),
        }
        if !node_dir().join("node_modules").exists() {
            let status = Command::new("npm")
                .args(["ci", "--quiet", "--no-audit", "--no-fund"])
                .current_dir(node_dir())
                .status()
                .expect("npm runs (it comes with Node.js)");
            assert!(status.success(), "`npm ci` in host/node failed");
        }
    });
}

/// The `sync-host` binary, for tests of the command line itself.
pub fn host_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(&["-p", "sync-host", "--bin", "sync-host"]);
        workspace().join("target/release/sync-host")
    })
}

/// The compiled component, shared by every test of a binary (compiled once).
pub fn runtime() -> Arc<SyncRuntime> {
    static RUNTIME: OnceLock<Arc<SyncRuntime>> = OnceLock::new();
    RUNTIME.get_or_init(|| Arc::new(SyncRuntime::from_file(guest_wasm()).expect("the guest loads"))).clone()
}
