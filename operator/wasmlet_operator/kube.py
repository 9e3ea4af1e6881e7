"""The operator's few Kubernetes writes, off the event loop, counted for the benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import GROUP, VERSION, WASMAPPS, WASMPLACEMENTS
from wasmlet_operator.metrics import OperatorMetrics


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

    async def apply_service(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        try:
            await self._call(self.core.create_namespaced_service, meta["namespace"], body)
        except ApiException as e:
            if e.status != 409:
                raise
            await self._call(
                self.core.patch_namespaced_service, meta["name"], meta["namespace"], body
            )

    async def apply_endpoint_slice(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        try:
            await self._call(
                self.discovery.create_namespaced_endpoint_slice, meta["namespace"], body
            )
        except ApiException as e:
            if e.status != 409:
                raise
            await self._call(
                self.discovery.replace_namespaced_endpoint_slice,
                meta["name"],
                meta["namespace"],
                body,
            )

    async def delete_service_objects(self, namespace: str, name: str) -> None:
        for fn, obj in (
            (self.core.delete_namespaced_service, name),
            (self.discovery.delete_namespaced_endpoint_slice, f"{name}-wasmlet"),
        ):
            try:
                await self._call(fn, obj, namespace)
            except ApiException as e:
                if e.status != 404:
                    raise

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
