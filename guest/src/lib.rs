//! QuickBooks Online customers sync, compiled to a WebAssembly component.
//!
//! The sync itself is plain Rust, generic over [`platform::Platform`] (the
//! capabilities a host gives the component), so that mapping, paging and the
//! sync algorithm unit-test natively and can be benchmarked natively against
//! the same code inside wasmtime. The WIT bindings live only in `component`,
//! which is compiled for `wasm32` alone.

pub mod customer;
pub mod metadata;
pub mod money;
pub mod paging;
pub mod platform;
pub mod qbo;
pub mod reconcile;
pub mod sync;
#[cfg(test)]
mod testing;

#[cfg(target_arch = "wasm32")]
mod component;
