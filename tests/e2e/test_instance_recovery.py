"""No instance is lost when the API server goes away while instances restart.

Each restart of these instances reads a Secret from the API server; restarting the API
server makes some of those reads fail with connection errors the agent does not expect.
Every instance must come back through BackOff, and the agents keep supervising them.
"""

from __future__ import annotations

import pytest

from tests.fixtures.stack import Stack, wasmapp
from wasmlet_dev.waits import wait_until

pytestmark = pytest.mark.e2e

REPLICAS = 4


def instances(stack: Stack, ns: str, name: str) -> list[dict[str, object]]:
    return [
        i
        for node in stack.agents
        for a in stack.agent_apps(node)
        if (a["namespace"], a["name"]) == (ns, name)
        for i in a["instances"]
    ]


def test_api_server_restart_while_instances_restart_loses_none(
    stack: Stack, namespace: str
) -> None:
    if stack.kube.local is None:
        pytest.fail(
            "restarting the API server needs the local control plane (not --existing-cluster)"
        )
    stack.kube.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=t"
    )
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    stack.apply(
        namespace,
        wasmapp("flapping", stack.modules["exit"], replicas=REPLICAS, args=["0"], env=env,
                restartPolicy="Always", backoff={"initialSeconds": 0.1, "maxSeconds": 0.4}),
    )  # fmt: skip
    wait_until(
        lambda: (
            len(found := instances(stack, namespace, "flapping")) == REPLICAS
            and all(int(str(i["restarts"])) >= 2 for i in found)
        ),
        f"{REPLICAS} instances restarting",
        timeout=60,
    )
    stack.kube.local.restart_apiserver()
    before = {
        str(i["name"]): int(str(i["restarts"])) for i in instances(stack, namespace, "flapping")
    }

    def all_back_and_restarting() -> bool:
        now = instances(stack, namespace, "flapping")
        if len(now) != REPLICAS:
            return False
        # Each instance restarted again after the API server came back (still supervised).
        return all(int(str(i["restarts"])) > before.get(str(i["name"]), 0) + 2 for i in now)

    wait_until(all_back_and_restarting, f"{REPLICAS} instances supervised after the restart",
               timeout=90)  # fmt: skip
    stack.ensure_operator()  # what the agents did is checked; later tests need an operator
