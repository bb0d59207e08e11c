//! Host-side bindings of the `sync-component` world, generated from `wit/`.
//! In a module of its own so the generated names shadow nothing. Every import
//! may trap: that is how a capability stops a component that goes past a
//! limit of its run.

wasmtime::component::bindgen!({
    world: "sync-component",
    path: "../wit",
    imports: { default: trappable },
});
