"""What the agent checks once at start, with the API server in reach: that the CRDs it uses
are served and that its identity holds every permission it will use. A missing one stops the
agent at once with a message naming it and the fix, rather than as a 403 or 404 deep in a
watch or a status write minutes later (issue: "an agent without a permission it needs fails at
start with a message naming it").

The decisions (which permissions, which are missing, the message) are pure; `preflight` does
the I/O: one discovery GET and one SelfSubjectAccessReview per permission. Every authenticated
identity may create SelfSubjectAccessReviews (the bootstrap `system:basic-user` role).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from wasmlet.api.constants import GROUP, SYSTEM_NAMESPACE, VERSION, WASMNODES, WASMPLACEMENTS

log = logging.getLogger("wasmlet.agent.preflight")

RBAC_FILE = "deploy/20-agent-rbac.yaml"
# The resources of wasmlet.dev the agent reads or writes (WasmApps come through placements).
SERVED = (WASMPLACEMENTS, f"{WASMPLACEMENTS}/status", WASMNODES, f"{WASMNODES}/status")


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""  # "" is every namespace
    why: str = ""

    def __str__(self) -> str:
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        if self.group:
            res = f"{res.split('/', 1)[0]}.{self.group}" + (
                f"/{self.subresource}" if self.subresource else ""
            )
        where = f" in namespace {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {res}{where}"


def _perms(
    group: str, resource: str, verbs: str, why: str, *, sub: str = "", ns: str = ""
) -> list[Permission]:
    return [Permission(v, group, resource, sub, ns, why) for v in verbs.split()]


# What the agent's code calls, kept beside deploy/20-agent-rbac.yaml (a unit test compares).
REQUIRED: tuple[Permission, ...] = (
    *_perms(GROUP, WASMPLACEMENTS, "list watch", "the placement watch"),
    *_perms(GROUP, WASMPLACEMENTS, "patch", "the status writer", sub="status"),
    *_perms(GROUP, WASMNODES, "create patch", "registering the node"),
    *_perms(GROUP, WASMNODES, "patch", "the heartbeat's node status", sub="status"),
    *_perms(
        "coordination.k8s.io", "leases", "get create update", "the heartbeat", ns=SYSTEM_NAMESPACE
    ),
    *_perms(
        "", "serviceaccounts", "create", "the node reader's token", sub="token", ns=SYSTEM_NAMESPACE
    ),
    *_perms("authentication.k8s.io", "tokenreviews", "create", "the agent API's authentication"),
    *_perms(
        "authorization.k8s.io", "subjectaccessreviews", "create", "the agent API's authorization"
    ),
)


def missing_resources(served: Iterable[str]) -> list[str]:
    """The resources of wasmlet.dev the agent needs that discovery does not list."""
    have = set(served)
    return [r for r in SERVED if r not in have]


def denied(answers: dict[Permission, bool]) -> list[Permission]:
    """The required permissions answered `not allowed`, in REQUIRED's order."""
    return [p for p in REQUIRED if not answers.get(p, False)]


def crd_problem(missing: list[str]) -> str | None:
    if not missing:
        return None
    crds = sorted({f"{r.split('/', 1)[0]}.{GROUP}" for r in missing})
    return (
        f"the API server does not serve {', '.join(missing)} of {GROUP}/{VERSION}: the "
        f"CustomResourceDefinition(s) {', '.join(crds)} are not installed; install them with "
        "`kubectl apply -k deploy/` (or `kubectl apply -f crds/`)"
    )


def permission_problem(user: str, missing: list[Permission]) -> str | None:
    if not missing:
        return None
    lines = "; ".join(f"{p} (for {p.why})" for p in missing)
    return (
        f"the agent's identity {user or '(unknown)'} lacks {len(missing)} permission(s) it "
        f"needs: {lines}; grant them as {RBAC_FILE} does (ClusterRole wasmlet-agent and the "
        f"Roles in {SYSTEM_NAMESPACE})"
    )


def _allowed(authz: client.AuthorizationV1Api, p: Permission) -> bool:
    body = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=p.verb,
                group=p.group,
                resource=p.resource,
                subresource=p.subresource or None,
                namespace=p.namespace or None,
            )
        )
    )
    resp: Any = authz.create_self_subject_access_review(body)
    return bool(resp.status.allowed)


def _served(api: client.ApiClient) -> list[str] | None:
    """The resource names of wasmlet.dev/v1alpha1, or None when the group is not served."""
    try:
        resp: Any = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return [r.name for r in resp.resources]


def _whoami(api: client.ApiClient) -> str:
    try:
        resp: Any = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        return str(resp.status.user_info.username)
    except (ApiException, AttributeError):
        return ""


def check(api: client.ApiClient) -> str | None:
    """Why the agent cannot run against this API server, or None (blocking I/O)."""
    served = _served(api)
    problem = crd_problem(missing_resources(served or []))
    if problem is not None:
        return problem
    authz = client.AuthorizationV1Api(api)
    answers = {p: _allowed(authz, p) for p in REQUIRED}
    return permission_problem(_whoami(api), denied(answers))


async def preflight(api: client.ApiClient) -> str | None:
    """`check` off the event loop; an API error other than a refusal is logged and passes
    (the agent's own retries handle a flaky server; this check is for what will not heal)."""
    try:
        return await asyncio.to_thread(check, api)
    except Exception as e:
        log.warning("start-up checks could not run (%s); going on", e)
        return None
