"""The generated dashboards: variables, units, legends and ids a Grafana user relies on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wasmlet_dev.cluster.binaries import repo_root
from wasmlet_dev.monitoring.dashboards import dashboards_json

DASHBOARDS = repo_root() / "deploy" / "monitoring" / "dashboards"


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards_json().items()}


def test_the_four_dashboards_are_committed_as_generated() -> None:
    assert {p.name for p in DASHBOARDS.glob("*.json")} == set(boards())
    for name, text in dashboards_json().items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"run bash hack/render-monitoring.sh ({name})"
        )


@pytest.mark.parametrize("name", sorted(boards()))
def test_panels_have_units_legends_variables_and_unique_ids(name: str) -> None:
    board = boards()[name]
    assert board["uid"].startswith("wasmlet-")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "app", "node"}
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in panels:
        assert panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        if panel["type"] != "heatmap":
            assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"] is True, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(refs), panel["title"]
        for target in panel["targets"]:
            assert target["legendFormat"], panel["title"]
            assert "$namespace" in target["expr"] or "process_resident" in target["expr"]
