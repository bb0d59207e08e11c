//! `sync-host compose`: turns a sync component into a plain WASI command
//! that any Preview 2 runtime runs (the wasmtime CLI, wasmtime-py, jco).
//!
//! The component is wired, unchanged, between two adapter components
//! (`host/wasi`): the *provider* implements every `portable-sync:sync`
//! import with standard WASI (and gives the component an empty environment),
//! the *driver* exports `wasi:cli/run` and calls the component's `sync`.
//! Provider → component → driver, and the driver → provider `run-control`
//! edge for what the provider needs from `describe()`: no cycle.
//! Everything left unsatisfied (wasi:http, wasi:filesystem, wasi:cli, …)
//! becomes an import of the command, for the runtime to give.

use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use wac_graph::{types::Package, CompositionGraph, EncodeOptions, PackageId, Processor};

/// The adapters' file names, as `cargo build --release --target
/// wasm32-wasip2 -p sync-wasi-provider -p sync-wasi-driver` writes them.
pub const PROVIDER: &str = "sync_wasi_provider.wasm";
pub const DRIVER: &str = "sync-wasi-driver.wasm";
/// Where that build puts them, from the workspace root.
const BUILT_ADAPTERS: &str = "target/wasm32-wasip2/release";

/// The export the provider plugs into the component's own environment import.
const EMPTY_ENVIRONMENT: &str = "wasi:cli/environment@";
/// The custom section that says what the command needs (read by `inspect`).
pub const CONTRACT_SECTION: &str = "portable-sync:command";

#[derive(Args)]
pub struct ComposeArgs {
    /// The sync component (.wasm), embedded unchanged.
    #[arg(long)]
    component: PathBuf,
    /// Where to write the WASI command (.wasm).
    #[arg(long)]
    output: PathBuf,
    /// The provider adapter (default: beside this binary, else built in this
    /// workspace's target/wasm32-wasip2/release).
    #[arg(long)]
    provider: Option<PathBuf>,
    /// The driver adapter (default: like --provider).
    #[arg(long)]
    driver: Option<PathBuf>,
}

pub fn compose_command(args: ComposeArgs) -> anyhow::Result<()> {
    let component = std::fs::read(&args.component)
        .with_context(|| format!("cannot read component {}", args.component.display()))?;
    let inspection = crate::runtime::inspect::inspect(&component)
        .with_context(|| format!("cannot inspect {}", args.component.display()))?;
    // The composition forwards every import the adapters do not provide to
    // the runtime; a component importing wasi:filesystem would reach /state.
    anyhow::ensure!(
        inspection.fits,
        "{} cannot be composed: {}",
        args.component.display(),
        inspection.problem.unwrap_or_default()
    );
    let (provider_path, driver_path) = adapter_paths(args.provider, args.driver)?;
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("cannot read adapter {}", path.display()));
    let composed = compose(&component, &read(&provider_path)?, &read(&driver_path)?)?;
    let with_contract = append_custom_section(composed, CONTRACT_SECTION, contract(&inspection).as_bytes());
    std::fs::write(&args.output, &with_contract).with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes): a WASI command; with SYNC_BASE_URL, SYNC_ACCESS_TOKEN and SYNC_CONFIG_<key> set, run it \
         with e.g. `wasmtime run -S http --dir <state>::/state --env SYNC_BASE_URL --env SYNC_ACCESS_TOKEN \
         --env SYNC_CONFIG_<key> {}`",
        args.output.display(),
        with_contract.len(),
        args.output.display()
    );
    Ok(())
}

/// Wires `component` between the adapters; returns the command's bytes. The
/// component's bytes are embedded as they are (`define_components`).
pub fn compose(component: &[u8], provider: &[u8], driver: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let register = |graph: &mut CompositionGraph, name: &str, bytes: &[u8]| -> anyhow::Result<_> {
        let package = Package::from_bytes(name, None, bytes.to_vec(), graph.types_mut())
            .with_context(|| format!("cannot read {name}"))?;
        Ok(graph.register_package(package)?)
    };
    let provider_package = register(&mut graph, "sync:provider", provider)?;
    let component_package = register(&mut graph, "sync:component", component)?;
    let driver_package = register(&mut graph, "sync:driver", driver)?;
    let provider_instance = graph.instantiate(provider_package);
    let component_instance = graph.instantiate(component_package);
    let driver_instance = graph.instantiate(driver_package);

    let exports_of = |graph: &CompositionGraph, package: PackageId| -> Vec<String> {
        graph.types()[graph[package].ty()].exports.keys().cloned().collect()
    };
    let imports_of = |graph: &CompositionGraph, package: PackageId| -> Vec<String> {
        graph.types()[graph[package].ty()].imports.keys().cloned().collect()
    };
    let provider_exports = exports_of(&graph, provider_package);
    let environment = provider_exports
        .iter()
        .find(|name| name.starts_with(EMPTY_ENVIRONMENT))
        .context("the provider exports no wasi:cli/environment")?
        .clone();
    // Names are matched exactly: `set_instantiation_argument` does not fall
    // back to semver matching, so look the exports up rather than hard-code
    // patch versions.
    for name in imports_of(&graph, component_package) {
        let from = if name.starts_with("portable-sync:sync/") {
            name.clone()
        } else if name.starts_with(EMPTY_ENVIRONMENT) {
            environment.clone()
        } else {
            continue; // the rest of std's WASI: the runtime's
        };
        let export = graph
            .alias_instance_export(provider_instance, &from)
            .map_err(|_| anyhow::anyhow!("the component imports {name}, which the provider does not export"))?;
        graph
            .set_instantiation_argument(component_instance, &name, export)
            .with_context(|| format!("cannot plug the provider's {from} into the component's {name}"))?;
    }
    for name in imports_of(&graph, driver_package) {
        let export = if name.starts_with("portable-sync:sync/sync@") {
            graph.alias_instance_export(component_instance, &name)
        } else if name.starts_with("portable-sync:wasi/") {
            graph.alias_instance_export(provider_instance, &name)
        } else {
            continue;
        }
        .map_err(|_| anyhow::anyhow!("nothing exports {name}, which the driver imports"))?;
        graph.set_instantiation_argument(driver_instance, &name, export)?;
    }
    let run = exports_of(&graph, driver_package)
        .into_iter()
        .find(|name| name.starts_with("wasi:cli/run@"))
        .context("the driver exports no wasi:cli/run")?;
    let run_export = graph.alias_instance_export(driver_instance, &run)?;
    graph.export(run_export, &run)?;
    let bytes = graph.encode(EncodeOptions {
        define_components: true,
        validate: true,
        processor: Some(Processor { name: "sync-host", version: env!("CARGO_PKG_VERSION") }),
    })?;
    Ok(bytes)
}

/// What the command needs from its runtime and what it reads, as JSON, for
/// `inspect` and for people (`wasm-tools` shows custom sections).
fn contract(inspection: &crate::runtime::inspect::Inspection) -> String {
    let metadata = inspection.metadata.as_ref();
    let mut required = vec!["SYNC_BASE_URL".to_owned(), "SYNC_ACCESS_TOKEN".to_owned()];
    let mut optional = Vec::new();
    for key in metadata.map(|m| m.configuration.as_slice()).unwrap_or_default() {
        let variable = format!("SYNC_CONFIG_{}", key.name);
        if key.required {
            required.push(variable);
        } else {
            optional.push(variable);
        }
    }
    optional.extend(
        [
            "SYNC_CONNECTION",
            "SYNC_LOG",
            "SYNC_RETRY_BUDGET_SECS",
            "SYNC_RETRY_MAX_WAIT_SECS",
            "SYNC_REQUESTS_PER_MINUTE",
        ]
        .map(str::to_owned),
    );
    serde_json::json!({
        "preopen": "/state",
        "store": "/state/sync.sqlite",
        "env": { "required": required, "optional": optional },
        "sync": metadata.map(|m| serde_json::json!({"name": m.name, "version": m.version})),
    })
    .to_string()
}

/// Appends a custom section (id 0) to a component binary: allowed anywhere
/// among a component's sections, and ignored by runtimes.
fn append_custom_section(mut bytes: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::with_capacity(name.len() + payload.len() + 5);
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    bytes.push(0);
    leb128(content.len(), &mut bytes);
    bytes.extend_from_slice(&content);
    bytes
}

/// The adapters: the ones given, else beside this binary (a release or an
/// install copies them there), else this workspace's build (built first
/// when cargo started this binary, as the guest is).
fn adapter_paths(provider: Option<PathBuf>, driver: Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf)> {
    if provider.is_none() || driver.is_none() {
        build_adapters_under_cargo()?;
    }
    let mut folders = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            folders.push(dir.to_path_buf());
            // target/release/sync-host → target/wasm32-wasip2/release/
            if let Some(target) = dir.parent() {
                folders.push(target.join("wasm32-wasip2/release"));
            }
        }
    }
    folders.push(PathBuf::from(BUILT_ADAPTERS));
    let find = |given: Option<PathBuf>, file: &str| -> anyhow::Result<PathBuf> {
        if let Some(path) = given {
            return Ok(path);
        }
        folders.iter().map(|dir| dir.join(file)).find(|p| p.exists()).with_context(|| {
            format!(
                "cannot find the adapter {file} beside sync-host or in {BUILT_ADAPTERS}; build the adapters with \
                 `cargo build --release --target wasm32-wasip2 -p sync-wasi-provider -p sync-wasi-driver` \
                 (SQLite needs clang and wasi-libc: README, \"Run it in any WASI host\")"
            )
        })
    };
    Ok((find(provider, PROVIDER)?, find(driver, DRIVER)?))
}

/// When cargo started this binary from the workspace, builds the adapters
/// with the README's command (a no-op when they are up to date).
fn build_adapters_under_cargo() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else { return Ok(()) };
    if !Path::new("host/wasi/provider/Cargo.toml").exists() {
        return Ok(());
    }
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "sync-wasi-provider", "-p", "sync-wasi-driver"])
        .status()
        .context("cannot run cargo to build the WASI adapters")?;
    anyhow::ensure!(
        status.success(),
        "building the WASI adapters failed; they need `rustup target add wasm32-wasip2` and, for SQLite, \
         `apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32`"
    );
    Ok(())
}
