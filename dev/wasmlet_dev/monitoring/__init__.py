"""Monitoring as code: the alert rules (and dashboards) rendered into deploy/monitoring/."""
