"""wasmlet's performance benchmarks; `python -m bench` runs them (see bench/RESULTS.md).

Timing goals live here, never in unit tests. Benchmark code reuses the test suite's guest
builder (`tests.guests.build`) and registry helpers (`tests.fixtures.registry`) on purpose:
the same modules and the same real registry the tests use, built and started the same way.
"""
