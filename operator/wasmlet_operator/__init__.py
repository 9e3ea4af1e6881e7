"""The wasmlet operator: places WasmApp instances on nodes and aggregates their status."""
