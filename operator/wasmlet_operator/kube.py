"""The operator's few Kubernetes writes, off the event loop, counted for the benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import (
    GROUP,
    VERSION,
    WASMAPPQUOTAS,
    WASMAPPS,
    WASMNODES,
    WASMPLACEMENTS,
)
from wasmlet_operator.metrics import OperatorMetrics
from wasmlet_operator.ownership import Ownership, ownership


class Kube:
    def __init__(self, api_client: client.ApiClient, metrics: OperatorMetrics | None = None):
        self.metrics = metrics
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.metrics is not None:
            self.metrics.api_requests.labels(operation=fn.__name__).inc()
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def patch_node_status(self, node: str, patch: Mapping[str, Any]) -> None:
        """The operator's one write to a WasmNode: Ready=Unknown once its heartbeat is stale."""
        await self._call(
            self.custom.patch_cluster_custom_object_status, GROUP, VERSION, WASMNODES, node, patch
        )

    async def create_placement(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The created object, or None if it already exists (a watch event will bring it)."""
        ns = body["metadata"]["namespace"]
        try:
            created = await self._call(
                self.custom.create_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                WASMPLACEMENTS,
                body,
            )
            return cast(Mapping[str, Any], created)
        except ApiException as e:
            if e.status == 409:
                return None
            raise

    async def replace_placement_spec(
        self, namespace: str, name: str, spec: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        patch = [{"op": "replace", "path": "/spec", "value": dict(spec)}]
        try:
            updated = await self._call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                WASMPLACEMENTS,
                name,
                patch,
                _content_type="application/json-patch+json",
            )
            return cast(Mapping[str, Any], updated)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def delete_placement(self, namespace: str, name: str) -> None:
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                WASMPLACEMENTS,
                name,
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def patch_app_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                WASMAPPS,
                name,
                {"status": dict(status)},
            )
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile
                raise

    async def _read(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        reads: dict[str, Callable[..., Any]] = {
            "Service": self.core.read_namespaced_service,
            "EndpointSlice": self.discovery.read_namespaced_endpoint_slice,
        }
        read = reads[kind]
        try:
            obj = await self._call(read, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(Mapping[str, Any], self.core.api_client.sanitize_for_serialization(obj))

    async def apply_owned(self, body: Mapping[str, Any], app_uid: str) -> Mapping[str, Any] | None:
        """Create the Service or EndpointSlice `body`, or update the one of its name if this
        WasmApp owns it. Returns the existing object, untouched, if someone else owns the name.

        Updates carry the resourceVersion that was read, so an object replaced meanwhile by
        someone else's is never overwritten (the API server answers 409; the next reconcile
        looks again).
        """
        kind, meta = body["kind"], body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        ops: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "Service": (self.core.create_namespaced_service, self.core.patch_namespaced_service),
            "EndpointSlice": (
                self.discovery.create_namespaced_endpoint_slice,
                self.discovery.replace_namespaced_endpoint_slice,
            ),
        }
        create, update = ops[kind]
        try:
            await self._call(create, ns, body)
            return None
        except ApiException as e:
            if e.status != 409:
                raise
        existing = await self._read(kind, ns, name)
        decision = ownership(existing, app_uid)
        if decision is Ownership.CONFLICT:
            assert existing is not None
            return existing
        if decision is Ownership.ABSENT:  # deleted since the 409: the next reconcile creates
            return None
        assert existing is not None
        version = existing["metadata"]["resourceVersion"]
        pinned = {**body, "metadata": {**meta, "resourceVersion": version}}
        await self._call(update, name, ns, pinned)
        return None

    async def delete_owned(self, kind: str, namespace: str, name: str, app_uid: str) -> bool:
        """Delete the Service or EndpointSlice `name` only if this WasmApp owns it (the uid
        precondition makes the check and the delete one step). True if it was deleted."""
        existing = await self._read(kind, namespace, name)
        if ownership(existing, app_uid) is not Ownership.OURS:
            return False
        assert existing is not None
        deletes: dict[str, Callable[..., Any]] = {
            "Service": self.core.delete_namespaced_service,
            "EndpointSlice": self.discovery.delete_namespaced_endpoint_slice,
        }
        delete = deletes[kind]
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=existing["metadata"]["uid"])
        )
        try:
            await self._call(delete, name, namespace, body=options)
        except ApiException as e:
            if e.status not in (404, 409):  # gone, or replaced by another object meanwhile
                raise
            return False
        return True

    async def delete_service_objects(self, namespace: str, name: str, app_uid: str) -> None:
        """The app's Service and EndpointSlice, if they are this app's (never someone else's)."""
        await self.delete_owned("EndpointSlice", namespace, f"{name}-wasmlet", app_uid)
        await self.delete_owned("Service", namespace, name, app_uid)

    # --- what each node's agent may read (grants.py builds the bodies) -------------------

    async def ensure_service_account(self, body: Mapping[str, Any]) -> None:
        try:
            await self._call(
                self.core.create_namespaced_service_account, body["metadata"]["namespace"], body
            )
        except ApiException as e:
            if e.status != 409:
                raise

    async def apply_grant(self, role: Mapping[str, Any], binding: Mapping[str, Any]) -> None:
        """The Role first, then its binding (a binding to a missing Role grants nothing)."""
        for body, create, replace in (
            (role, self.rbac.create_namespaced_role, self.rbac.replace_namespaced_role),
            (
                binding,
                self.rbac.create_namespaced_role_binding,
                self.rbac.replace_namespaced_role_binding,
            ),
        ):
            meta = body["metadata"]
            try:
                await self._call(create, meta["namespace"], body)
            except ApiException as e:
                if e.status != 409:
                    raise
                await self._call(replace, meta["name"], meta["namespace"], body)

    async def delete_grant(self, namespace: str, name: str) -> None:
        for fn in (
            self.rbac.delete_namespaced_role_binding,
            self.rbac.delete_namespaced_role,
        ):
            try:
                await self._call(fn, name, namespace)
            except ApiException as e:
                if e.status != 404:
                    raise

    async def list_grant_roles(self, label: str) -> list[Mapping[str, Any]]:
        roles: Any = await self._call(self.rbac.list_role_for_all_namespaces, label_selector=label)
        api_client = self.rbac.api_client
        return [api_client.sanitize_for_serialization(r) for r in roles.items]

    async def patch_quota_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        """The operator's one write to a WasmAppQuota: its status (used, hard)."""
        try:
            updated = await self._call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                WASMAPPQUOTAS,
                name,
                {"status": dict(status)},
            )
            return cast(Mapping[str, Any], updated)
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile
                raise
            return None
