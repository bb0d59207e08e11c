//! Host-side bindings of the `sync-component` world, generated from `wit/`.
//! In a module of its own so the generated names shadow nothing.

wasmtime::component::bindgen!({
    world: "sync-component",
    path: "../wit",
});
