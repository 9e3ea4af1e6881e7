"""Registration and heartbeat: this node's WasmNode and its Lease, like the kubelet's.

On a thread of its own: a busy event loop or a queue of status writes never delays it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import GROUP, NODE_LABEL, SYSTEM_NAMESPACE, VERSION, WASMNODES
from wasmlet.api.placements import rfc3339
from wasmlet_agent.config import AgentConfig
from wasmlet_agent.runtime.engine import wasmtime_version

log = logging.getLogger("wasmlet.agent.node")
AGENT_VERSION = "0.1.0"
NODE_STATUS_SECONDS = 10.0  # how often the WasmNode status is refreshed


class Heartbeat:
    def __init__(
        self,
        config: AgentConfig,
        api: client.ApiClient,
        api_port: Callable[[], int],
        instances: Callable[[], int],
        on_beat: Callable[[], None] = lambda: None,
        serving_certificate: str = "",
    ) -> None:
        self.serving_certificate = serving_certificate
        self.config, self.node = config, config.node
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.api_port, self.instances, self.on_beat = api_port, instances, on_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def labels(self) -> dict[str, str]:
        return {NODE_LABEL: self.node, **self.config.cluster.labels}

    def register(self) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WasmNode",
            "metadata": {"name": self.node, "labels": self.labels()},
        }
        try:
            self.custom.create_cluster_custom_object(GROUP, VERSION, WASMNODES, body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.custom.patch_cluster_custom_object(
                GROUP, VERSION, WASMNODES, self.node, {"metadata": {"labels": self.labels()}}
            )
        self.write_node_status()

    def write_node_status(self) -> None:
        cluster = self.config.cluster
        status: dict[str, Any] = {
            "address": self.config.address,
            "agentPort": self.api_port(),
            "servingCertificate": self.serving_certificate,
            "capacity": {
                "instances": cluster.capacity_instances,
                "memory": cluster.capacity_memory,
            },
            "instances": self.instances(),
            "nodeInfo": {"agentVersion": AGENT_VERSION, "wasmtimeVersion": wasmtime_version()},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AgentReady",
                    "message": "agent is running and heartbeating",
                    "lastTransitionTime": rfc3339(datetime.now(UTC)),
                }
            ],
        }
        self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, WASMNODES, self.node, {"status": status}
        )

    def renew_lease(self) -> None:
        now = datetime.now(UTC)
        seconds = self.config.cluster.lease_seconds
        try:
            lease = self.coordination.read_namespaced_lease(self.node, SYSTEM_NAMESPACE)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coordination.create_namespaced_lease(
                SYSTEM_NAMESPACE,
                client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.node, namespace=SYSTEM_NAMESPACE),
                    spec=client.V1LeaseSpec(
                        holder_identity=self.node,
                        lease_duration_seconds=seconds,
                        acquire_time=now,
                        renew_time=now,
                    ),
                ),
            )
            return
        assert lease.spec is not None
        lease.spec.renew_time = now
        lease.spec.holder_identity = self.node
        lease.spec.lease_duration_seconds = seconds
        self.coordination.replace_namespaced_lease(self.node, SYSTEM_NAMESPACE, lease)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        """Registers first (retrying for as long as it takes: an edge node may start with no
        API server in reach), then renews the Lease."""
        last_status = 0.0
        registered = False
        while not self._stop.is_set():
            try:
                if not registered:
                    self.register()
                    registered = True
                    last_status = time.monotonic()
                self.renew_lease()
                if time.monotonic() - last_status > NODE_STATUS_SECONDS:
                    self.write_node_status()
                    last_status = time.monotonic()
                self.on_beat()
            except Exception as e:  # API or connection errors (e.g. the API server restarts)
                log.warning("heartbeat failed: %s", e)
            self._stop.wait(self.config.cluster.heartbeat_seconds)
