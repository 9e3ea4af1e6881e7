"""Cluster mode: this agent as a wasmlet node under the operator.

Parts with one job each, wired once in `node.run_node`: the heartbeat (WasmNode and Lease),
the placement watch (this node's WasmPlacements -> desired apps), the status writer
(reports -> placement status) and the event recorder (Events on WasmApps).
"""
