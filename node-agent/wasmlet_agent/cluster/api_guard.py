"""The agent API's gate in cluster mode: TokenReview, then SubjectAccessReview, cached."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes import client

from wasmlet.api.constants import GROUP
from wasmlet_agent.api_auth import (
    Attributes,
    Decision,
    DecisionCache,
    Lookup,
    Verdict,
    attributes_for,
    bearer_token,
)

log = logging.getLogger("wasmlet.agent.api_guard")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REVIEW_TIMEOUT = 3.0  # seconds per review call; past it the API server counts as unreachable


class ApiUnreachable(Exception):
    """The API server gave no answer (network, timeout, 5xx)."""


class Reviewer:
    """Asks the API server who a token is and what it may do, with the agent's credentials
    (deploy/20-agent-rbac.yaml grants it `create` on both reviews)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)

    def review(self, token: str, attrs: Attributes) -> tuple[Verdict, str]:
        """(verdict, user name); raises ApiUnreachable when there is no answer."""
        try:
            tr: Any = self.authn.create_token_review(
                client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)),
                _request_timeout=REVIEW_TIMEOUT,
            )
            st = tr.status
            if st is None or not st.authenticated or st.user is None:
                return Verdict.UNAUTHENTICATED, ""
            user = st.user
            spec = client.V1SubjectAccessReviewSpec(
                user=user.username, groups=user.groups, uid=user.uid, extra=user.extra
            )
            if attrs.path:
                spec.non_resource_attributes = client.V1NonResourceAttributes(
                    path=attrs.path, verb=attrs.verb
                )
            else:
                spec.resource_attributes = client.V1ResourceAttributes(
                    group=GROUP, resource=attrs.resource, subresource=attrs.subresource,
                    namespace=attrs.namespace or None, name=attrs.name, verb=attrs.verb,
                )  # fmt: skip
            sar: Any = self.authz.create_subject_access_review(
                client.V1SubjectAccessReview(spec=spec), _request_timeout=REVIEW_TIMEOUT
            )
        except client.ApiException as e:
            if e.status is not None and e.status < 500:
                raise  # our own permission or request is wrong: an operator must see it
            raise ApiUnreachable(str(e)) from e
        except Exception as e:  # urllib3 connection errors and timeouts
            raise ApiUnreachable(str(e)) from e
        allowed = bool(sar.status and sar.status.allowed)
        return (Verdict.ALLOW if allowed else Verdict.DENY), str(user.username)


Review = Callable[[str, Attributes], tuple[Verdict, str]]


class Guard:
    """aiohttp middleware: 401 without a valid token, 403 without permission, 503 when the
    API server cannot be asked and no recent decision exists."""

    def __init__(
        self,
        node: str,
        review: Review,
        offline: Callable[[], bool] = lambda: False,
        cache: DecisionCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        state_file: Path | None = None,
    ) -> None:
        self.node, self.review, self.offline, self.clock = node, review, offline, clock
        self.cache = cache or DecisionCache()
        # Recent allows survive a restart (the edge: an agent restarted while cut off).
        self.state_file = state_file
        if state_file is not None:
            self._load()

    def _load(self) -> None:
        assert self.state_file is not None
        try:
            records = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("recent node API decisions %s unreadable, ignored: %s", self.state_file, e)
            return
        if isinstance(records, list):
            kept = self.cache.load_records(records, self.clock(), time.time())
            log.info("node API: %d recent decision(s) kept from before the restart", kept)

    def _save(self) -> None:
        if self.state_file is None:
            return
        records = self.cache.to_records(self.clock(), time.time())
        tmp = self.state_file.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(records, f)
            os.replace(tmp, self.state_file)
        except OSError as e:
            log.warning("saving recent node API decisions to %s: %s", self.state_file, e)

    async def decide(self, token: str, attrs: Attributes) -> Decision | None:
        """The decision for this token and attributes; None if nobody can answer."""
        now = self.clock()
        state, cached = self.cache.lookup(token, attrs, now)
        if state is Lookup.FRESH and cached is not None:
            return cached
        if not self.offline():
            try:
                verdict, user = await asyncio.to_thread(self.review, token, attrs)
            except ApiUnreachable as e:
                log.warning("cannot review a request for %s: %s", attrs.describe(), e)
            else:
                decision = Decision(verdict, user, self.clock())
                self.cache.put(token, attrs, decision)
                if verdict is Verdict.ALLOW:
                    await asyncio.to_thread(self._save)
                return decision
        return self.cache.offline(token, attrs, now)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        attrs = attributes_for(request.path, self.node)
        if attrs is None:
            return await handler(request)
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return _refuse(401, "Unauthorized: present a bearer token (Authorization header)")
        decision = await self.decide(token, attrs)
        if decision is None:
            return _refuse(503, "the API server cannot be reached to authorize this request, "
                           "and no recent decision for it exists; try again later")  # fmt: skip
        if decision.verdict is Verdict.UNAUTHENTICATED:
            return _refuse(401, "Unauthorized: the token is not valid")
        if decision.verdict is Verdict.DENY:
            return _refuse(403, f"Forbidden: user {decision.user!r} may not {attrs.describe()}")
        return await handler(request)


def _refuse(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="wasmlet-agent"'} if status == 401 else None
    return web.Response(status=status, text=message + "\n", headers=headers)
