"""Development tooling: the local cluster, `wasmlet dev`, test guests and the helpers dev, tests
and benchmarks share. Not part of the product: the runtime image does not carry it."""
