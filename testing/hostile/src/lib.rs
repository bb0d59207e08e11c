//! A hostile sync component, for the host's tests (`tests/limits.rs`): the
//! configuration key `behaviour` picks how it misbehaves. The host must stop
//! it with an error naming the limit, or refuse what it asks, and stay up
//! with its store intact.

#[cfg(target_arch = "wasm32")]
mod component;
