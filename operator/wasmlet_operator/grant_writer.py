"""Keeps every node's read grants (`grants.py`) equal to what its placements name.

Grants widen before a placement is written (`widen`), so an agent can read what a new
placement names as soon as it sees it, and narrow once placements went (`run`, woken by
placement events), so removing a reference or a placement revokes the agent's access. Right
after start the operator's view of placements is still filling, so for `settle_seconds` it
only widens; then it sweeps every grant Role, which also removes those left by a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from kubernetes.client.exceptions import ApiException

from wasmlet.api.references import References, node_reader, references
from wasmlet_operator.grants import (
    GRANT_LABEL,
    PLACED,
    Pair,
    build_reader_account,
    build_role,
    build_role_binding,
    desired_grants,
    pair_of,
)
from wasmlet_operator.kube import Kube
from wasmlet_operator.state import ClusterState

log = logging.getLogger("wasmlet.operator.grants")

# A widened grant is kept until its placement is seen, or this long if it never comes (its
# write failed); after that only placements count.
PENDING_SECONDS = 30.0
# What a grant Role found on the API server but not written by this process holds: unknown,
# so the next pass rewrites (or deletes) it.
_UNKNOWN = References(secrets=frozenset({"?unknown"}))


class Grants:
    def __init__(self, kube: Kube, state: ClusterState, settle_seconds: float = 10.0) -> None:
        self.kube = kube
        self.state = state
        self.settle_seconds = settle_seconds
        self._written: dict[Pair, References] = {}
        # (namespace, node, app) -> what a placement about to be written names, since when
        self._pending: dict[tuple[str, str, str], tuple[References, float]] = {}
        self._accounts: set[str] = set()
        self._dirty: set[Pair] = set()
        self._new_nodes: set[str] = set()
        self._wake = asyncio.Event()
        self._started = time.monotonic()

    def mark(self, namespace: str, node: str, app: str) -> None:
        """A placement of `app` in `namespace` on `node` changed (and is in the state now):
        its grant is recomputed soon, from placements alone."""
        self._pending.pop((namespace, node, app), None)
        self._dirty.add((namespace, node))
        self._wake.set()

    def node_seen(self, node: str) -> None:
        """A WasmNode exists: its reader ServiceAccount should too (the agent asks for its
        token at start, before any grant)."""
        if node not in self._accounts:
            self._new_nodes.add(node)
            self._wake.set()

    async def _ensure_account(self, node: str) -> None:
        if node not in self._accounts:
            uid = ((self.state.nodes.get(node) or {}).get("metadata") or {}).get("uid")
            await self.kube.ensure_service_account(build_reader_account(node, uid))
            self._accounts.add(node)

    async def _ensure_accounts(self) -> None:
        nodes, self._new_nodes = self._new_nodes, set()
        for node in sorted(nodes):
            try:
                await self._ensure_account(node)
            except Exception as e:  # retried on the next pass
                log.warning("reader ServiceAccount of node %s: %s", node, e)
                self._new_nodes.add(node)

    def _desired(self, pair: Pair, now: float) -> References:
        ns, node = pair
        placements = (
            p for key, by_node in self.state.placements.items() if key[0] == ns
            for n, p in by_node.items() if n == node
        )  # fmt: skip
        refs = desired_grants(placements).get(pair, References())
        for key, (extra, since) in list(self._pending.items()):
            if key[:2] != pair:
                continue
            if now - since < PENDING_SECONDS:
                refs = refs | extra
            else:
                del self._pending[key]
        return refs

    async def widen(self, namespace: str, node: str, app: str, template: dict[str, object]) -> None:
        """Before `app`'s placement with `template` is written on `node`: grant what it names
        (and Events in its namespace)."""
        refs = references(template) | PLACED
        pair = (namespace, node)
        now = time.monotonic()
        self._pending[(namespace, node, app)] = (refs, now)
        kept = self._kept(pair)
        if kept and kept | refs == kept:
            return  # granted already (most placements: no API call, no scan of the state)
        await self._write(pair, self._desired(pair, now) | self._kept(pair))

    def _kept(self, pair: Pair) -> References:
        """What this process granted for `pair` (nothing if unknown)."""
        written = self._written.get(pair, References())
        return References() if written == _UNKNOWN else written

    async def _write(self, pair: Pair, refs: References) -> None:
        if self._written.get(pair, References()) == refs:
            return  # never written and nothing wanted, or unchanged
        ns, node = pair
        if not refs:
            await self.kube.delete_grant(ns, node_reader(node))
            self._written[pair] = refs
            return
        await self._ensure_account(node)
        await self.kube.apply_grant(build_role(ns, node, refs), build_role_binding(ns, node))
        self._written[pair] = refs

    async def sync(self, pairs: Iterable[Pair]) -> None:
        now = time.monotonic()
        settling = now - self._started < self.settle_seconds
        for pair in sorted(set(pairs)):
            wanted = self._desired(pair, now)
            if settling:
                wanted = wanted | self._kept(pair)
            try:
                await self._write(pair, wanted)
            except ApiException as e:
                log.warning("grant %s/%s: %s %s", *pair, e.status, (e.body or "")[:300])
                self._dirty.add(pair)
            except Exception as e:  # e.g. the API server is restarting: the next pass retries
                log.warning("grant %s/%s: %s", *pair, e)
                self._dirty.add(pair)

    async def run(self, resync_seconds: float = 60.0) -> None:
        """Apply marked changes as they come; sweep every grant Role once settled and then
        every `resync_seconds` (a crash may have left Roles that no placement names)."""
        await self._sweep_later(self.settle_seconds)
        last_sweep = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self._ensure_accounts()
                pairs, self._dirty = self._dirty, set()
                if time.monotonic() - last_sweep >= resync_seconds:
                    pairs |= await self._all_pairs()
                    last_sweep = time.monotonic()
                if pairs:
                    await self.sync(pairs)
            except Exception:  # never end the operator over a grant: the next pass retries
                log.exception("grant pass failed")
            await asyncio.sleep(0.05)  # a burst of placement events costs one pass

    async def _sweep_later(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            self._wake.clear()
            await self._ensure_accounts()
            pairs, self._dirty = self._dirty, set()
            await self.sync(pairs)  # widen only, while settling
        self._dirty |= await self._all_pairs()

    async def _all_pairs(self) -> set[Pair]:
        pairs = {
            (key[0], node) for key, by_node in self.state.placements.items() for node in by_node
        }
        try:
            roles = await self.kube.list_grant_roles(f"{GRANT_LABEL}=true")
        except Exception as e:  # the next sweep tries again
            log.warning("listing grant Roles: %s", e)
            return pairs
        for role in roles:
            pair = pair_of(role)
            if pair is not None:
                pairs.add(pair)
                self._written.setdefault(pair, _UNKNOWN)
        return pairs
