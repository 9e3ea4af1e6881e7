"""The operator's Events name it as their source, not kopf."""

from __future__ import annotations

import kopf

from wasmlet_operator.handlers import REPORTING_COMPONENT, configure_settings


def test_events_report_the_wasmlet_operator() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings)
    assert settings.posting.reporting_component == REPORTING_COMPONENT == "wasmlet-operator"
    assert settings.posting.reporting_instance
    assert settings.posting.event_name_prefix == "wasmlet-"
    assert settings.persistence.finalizer == "wasmlet.dev/cleanup"
