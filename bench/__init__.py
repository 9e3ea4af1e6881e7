"""wasmlet's performance benchmarks; `python -m bench` runs them (see bench/RESULTS.md).

Timing goals live here, never in unit tests. Benchmarks use the dev tooling the tests use
(`wasmlet_dev`: guest builder, registry, OCI push, ports, waits) and import nothing from
tests/: the same modules and the same real registry, built and started the same way.
"""
