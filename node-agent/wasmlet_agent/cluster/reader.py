"""The identity an agent reads Secrets and ConfigMaps with: its node's own ServiceAccount.

All agents share one ServiceAccount (a DaemonSet has one), so RBAC cannot tell nodes apart
by it. Each node therefore has a reader ServiceAccount, `wasmlet-agent-<node>`, which the
operator creates and grants `get` on exactly the names its placements reference. The agent
exchanges its own node-bound token for a token of that account (TokenRequest, bound to the
same Node); an admission policy (deploy/31-agent-reader-token-policy.yaml) lets an agent
request tokens only for its own node's reader.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from kubernetes import client

from wasmlet.api.constants import SYSTEM_NAMESPACE
from wasmlet.api.references import node_reader

log = logging.getLogger("wasmlet.agent.reader")

TOKEN_SECONDS = 3600
REFRESH_FRACTION = 0.8  # a token is renewed after this share of its life


class ReaderToken:
    """A reader token for `node`, requested on first use and renewed before it expires."""

    def __init__(self, api: client.ApiClient, node: str, seconds: int = TOKEN_SECONDS) -> None:
        self.core = client.CoreV1Api(api)
        self.node = node
        self.seconds = seconds
        self._token: str | None = None
        self._renew_at = 0.0
        self._mu = threading.Lock()

    def get(self) -> str:
        with self._mu:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token = self._request()
                self._renew_at = time.monotonic() + self.seconds * REFRESH_FRACTION
            return self._token

    def _request(self) -> str:
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=self.seconds,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Node", name=self.node
                ),
            )
        )
        resp: Any = self.core.create_namespaced_service_account_token(
            node_reader(self.node), SYSTEM_NAMESPACE, body
        )
        log.info("reader token for node %s issued", self.node)
        return str(resp.status.token)


def reader_client(api: client.ApiClient, node: str) -> client.ApiClient:
    """An ApiClient for the same cluster as `api` that authenticates as `node`'s reader."""
    token = ReaderToken(api, node)
    cfg: Any = copy.deepcopy(api.configuration)
    cfg.cert_file = cfg.key_file = None
    cfg.username = cfg.password = None
    # The client sends a bearer token only if one is set; the hook replaces it on each call.
    cfg.api_key = {"authorization": "Bearer unset"}
    cfg.api_key_prefix = {}

    def refresh(c: Any) -> None:
        c.api_key["authorization"] = f"Bearer {token.get()}"

    cfg.refresh_api_key_hook = refresh
    return client.ApiClient(cfg)
