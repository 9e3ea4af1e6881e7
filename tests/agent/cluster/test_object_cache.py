"""What the agent keeps cached and watched: exactly the objects its placements name."""

from __future__ import annotations

from wasmlet_agent.cluster.object_cache import referenced


def test_referenced_names_every_source_by_namespace() -> None:
    template = {
        "module": {"oci": {"reference": "r", "pullSecret": "pull"}},
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
        "volumes": [{"name": "v", "secret": {"secretName": "vs"}},
                    {"name": "w", "configMap": {"name": "vc"}}, {"name": "e", "emptyDir": {}}],
    }  # fmt: skip
    placements = [
        ("a", {"spec": {"template": template}}),
        ("b", {"spec": {"template": {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}}}),
        ("c", {"spec": {}}),
    ]
    assert referenced(placements) == {
        ("Secret", "a", "pull"), ("Secret", "a", "s"), ("Secret", "a", "vs"),
        ("ConfigMap", "a", "c"), ("ConfigMap", "a", "vc"), ("Secret", "b", "s"),
    }  # fmt: skip


def test_nothing_placed_nothing_kept() -> None:
    assert referenced([]) == set()
