//! Placeholder: the cross-host test (same .wasm in sync-host and in Node.js via jco) goes here.
