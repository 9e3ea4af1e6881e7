"""Many apps at once: 200 WasmApps applied together all become Ready."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e


def test_200_apps_applied_at_once_all_ready(stack: Stack, namespace: str) -> None:
    docs = [wasmapp(f"app-{i:03d}", stack.modules["long"], replicas=1) for i in range(200)]
    started = time.monotonic()
    stack.kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))

    def all_ready() -> bool:
        items = stack.custom.list_namespaced_custom_object(
            "wasmlet.dev", "v1alpha1", namespace, "wasmapps"
        )["items"]
        return len(items) == 200 and all(
            (i.get("status") or {}).get("readyReplicas") == 1 for i in items
        )

    wait_until(all_ready, "200 apps Ready", timeout=240, interval=1.0)
    elapsed = time.monotonic() - started
    placed = [
        p["spec"]["node"]
        for p in stack.custom.list_namespaced_custom_object(
            "wasmlet.dev", "v1alpha1", namespace, "wasmplacements"
        )["items"]
    ]
    assert len(placed) == 200
    # Spread: no node holds far more than its share.
    assert max(placed.count(n) for n in set(placed)) <= 200 // 3 + 10
    print(f"200 WasmApps applied to all Ready in {elapsed:.1f}s")
