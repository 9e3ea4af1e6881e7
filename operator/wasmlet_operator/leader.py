"""Leader election on a coordination.k8s.io Lease, so two operator replicas never act at once.

Like controller-runtime: wait to acquire, renew in the background, and stop acting (the
process exits) the moment renewal fails for a whole lease duration.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("wasmlet.operator.leader")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    renewed: datetime | None
    duration: int


def may_acquire(view: LeaseView | None, me: str, now: datetime) -> bool:
    """Pure rule: free, mine, or expired."""
    if view is None or view.holder in (None, "", me):
        return True
    if view.renewed is None:
        return True
    return (now - view.renewed).total_seconds() > view.duration


class LeaderElector:
    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: int = 15,
    ) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity, self.duration = (
            namespace,
            name,
            identity,
            duration,
        )

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=client.V1LeaseSpec(
                    holder_identity=self.identity,
                    lease_duration_seconds=self.duration,
                    acquire_time=now,
                    renew_time=now,
                ),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as e2:
                if e2.status == 409:
                    return False
                raise
        spec = lease.spec
        assert spec is not None
        view = LeaseView(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds or 15)
        if not may_acquire(view, self.identity, now):
            return False
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.duration
        try:  # resourceVersion in the body makes this a compare-and-swap
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    async def acquire(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self._try_acquire_or_renew):
                    log.info("became leader as %s", self.identity)
                    return
            except Exception as e:  # API errors, connection errors while it restarts
                log.warning("leader election: %s", e)
            await asyncio.sleep(self.duration / 5)

    async def hold(self) -> None:
        """Renew until renewal fails for a whole lease duration; then return (leadership lost)."""
        last_ok = _now()
        while True:
            await asyncio.sleep(self.duration / 3)
            try:
                if await asyncio.to_thread(self._try_acquire_or_renew):
                    last_ok = _now()
                    continue
                log.error("leader election: lease taken by another replica")
                return
            except Exception as e:  # keep trying until the lease duration runs out
                log.warning("leader election: renewal failed: %s", e)
            if (_now() - last_ok).total_seconds() > self.duration:
                log.error("leader election: could not renew for %ss", self.duration)
                return
