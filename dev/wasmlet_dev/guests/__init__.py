"""Guests built from source (C, Go, WAT; components via wasm-tools) for the tests and benchmarks."""
