"""Shared pytest configuration: the fixtures that start real servers live in tests/fixtures/."""

pytest_plugins = [
    "pytester",
    "tests.fixtures.cluster",
    "tests.fixtures.guests",
    "tests.fixtures.registry",
    "tests.fixtures.stack",
    "tests.fixtures.prometheus",
    "tests.fixtures.tenants",
]
