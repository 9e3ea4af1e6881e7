"""The wasmlet node agent: pulls, verifies, caches and runs Wasm modules under wasmtime."""
