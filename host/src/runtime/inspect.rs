//! `sync-host inspect`: what a component is, what it imports and exports,
//! and whether it fits the world this host offers, so a platform can vet a
//! component before running it.

use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::Engine;

use super::{SyncMetadata, SyncRuntime, WORLD_PACKAGE};

/// The interfaces this host links, without their version: its world's (at
/// [`WORLD_PACKAGE`]'s version) and the WASI ones Rust's std needs (0.2.x).
const WORLD_INTERFACES: &[&str] = &["proxy", "records", "listing", "checkpoint", "config", "logging"];
const STD_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// One import and whether this host provides it.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    pub name: String,
    pub provided: bool,
}

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Whether this host can run it: every import provided, `sync` exported.
    pub fits: bool,
    /// Why not, when it does not fit.
    pub problem: Option<String>,
    pub imports: Vec<Import>,
    pub exports: Vec<String>,
    /// Its `describe()`, when it fits.
    pub metadata: Option<SyncMetadata>,
}

/// Whether this host links `import` (an interface name with its version).
fn provided(import: &str) -> bool {
    let (name, version) = import.rsplit_once('@').unwrap_or((import, ""));
    let world_version = WORLD_PACKAGE.rsplit_once('@').map(|(_, v)| v).unwrap_or("");
    if let Some(interface) = name.strip_prefix("portable-sync:sync/") {
        return WORLD_INTERFACES.contains(&interface) && version == world_version;
    }
    STD_WASI.contains(&name) && version.starts_with("0.2.")
}

/// Inspects a component's bytes. An invalid component is an error; a valid
/// one that does not fit is an [`Inspection`] with `fits: false`.
pub fn inspect(bytes: &[u8]) -> anyhow::Result<Inspection> {
    let engine = Engine::new(&super::engine_config())?;
    // `{:#}`: the whole chain; the first link alone ("failed to parse
    // WebAssembly module") hides the cause, e.g. a core module given where a
    // component is expected.
    let component =
        Component::from_binary(&engine, bytes).map_err(|e| anyhow::anyhow!("not a valid component: {e:#}"))?;
    let ty = component.component_type();
    let imports: Vec<Import> =
        ty.imports(&engine).map(|(name, _)| Import { name: name.to_owned(), provided: provided(name) }).collect();
    let exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_owned()).collect();
    let unknown: Vec<&str> = imports.iter().filter(|i| !i.provided).map(|i| i.name.as_str()).collect();
    if !unknown.is_empty() {
        let problem = wasi_command(bytes, &imports, &exports)
            .unwrap_or_else(|| format!("imports this host does not provide: {}", unknown.join(", ")));
        return Ok(Inspection { fits: false, problem: Some(problem), imports, exports, metadata: None });
    }
    match SyncRuntime::from_component(engine, component) {
        Ok(runtime) => {
            Ok(Inspection { fits: true, problem: None, imports, exports, metadata: Some(runtime.metadata().clone()) })
        }
        Err(e) => Ok(Inspection { fits: false, problem: Some(format!("{e:#}")), imports, exports, metadata: None }),
    }
}

/// When the component is a WASI command (it exports `wasi:cli/run`, as
/// `sync-host compose` makes), what it is and what a runtime must give it:
/// the WASI interfaces from its imports, the preopen and environment from
/// the contract `compose` records in its `portable-sync:command` section.
fn wasi_command(bytes: &[u8], imports: &[Import], exports: &[String]) -> Option<String> {
    let run = exports.iter().find(|e| e.starts_with("wasi:cli/run@0.2."))?;
    let mut needs: Vec<&str> = Vec::new();
    for import in imports {
        let package = import.name.split('/').next().unwrap_or("");
        if !needs.contains(&package) {
            needs.push(package);
        }
    }
    let mut text = format!("a WASI command (exports {run}), not a sync component: run it in a WASI Preview 2 runtime");
    if imports.iter().any(|i| i.name.starts_with("wasi:http/outgoing-handler@")) {
        text.push_str(", with outgoing wasi:http");
    }
    // The contract `compose` appended: the JSON after the section's name.
    let marker = b"portable-sync:command";
    let contract = bytes.windows(marker.len()).rposition(|w| w == marker).and_then(|at| {
        let mut values =
            serde_json::Deserializer::from_slice(&bytes[at + marker.len()..]).into_iter::<serde_json::Value>();
        values.next()?.ok()
    });
    if let Some(contract) = contract {
        if let Some(preopen) = contract["preopen"].as_str() {
            text.push_str(&format!(
                ", a preopened {preopen} (the store: {})",
                contract["store"].as_str().unwrap_or("")
            ));
        }
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let env = &contract["env"];
        text.push_str(&format!(
            "; environment {} (optional: {})",
            names(&env["required"]).join(", "),
            names(&env["optional"]).join(", ")
        ));
    }
    text.push_str(&format!("; it imports {}", needs.join(", ")));
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_at_its_version_and_std_wasi_are_provided() {
        assert!(provided("portable-sync:sync/records@0.2.0"));
        assert!(!provided("portable-sync:sync/records@0.1.0"), "another version of the world");
        assert!(!provided("portable-sync:sync/secrets@0.2.0"));
        assert!(provided("wasi:io/streams@0.2.6"));
        assert!(!provided("wasi:sockets/tcp@0.2.6"));
        assert!(!provided("wasi:filesystem/preopens@0.2.0"));
    }

    #[test]
    fn a_component_that_imports_sockets_does_not_fit_and_says_which() {
        let bytes = wat::parse_str(
            r#"(component (import "wasi:sockets/tcp@0.2.6" (instance (export "f" (func)))) (import "wasi:io/poll@0.2.6" (instance)))"#,
        )
        .unwrap();
        let inspection = inspect(&bytes).unwrap();
        assert!(!inspection.fits);
        assert!(inspection.problem.unwrap().contains("wasi:sockets/tcp@0.2.6"));
        assert_eq!(inspection.imports.iter().filter(|i| i.provided).count(), 1);
    }
}
