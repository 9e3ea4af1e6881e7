"""wasmlet's Grafana dashboards as code (grafana-foundation-sdk), rendered into deploy/monitoring/.

Four dashboards share the `datasource`, `namespace`, `app` and `node` variables. Agent series
carry no node label (the node is the scrape target), so per-node panels join on
`wasmlet_agent_info`, whose `node` label names the node behind each agent target.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
APP = 'namespace=~"$namespace", app=~"$app"'
RATE = "$__rate_interval"
NODE_JOIN = ' * on (instance) group_left(node) wasmlet_agent_info{node=~"$node"}'

Target = tuple[str, str]  # (expr, legend)


def on_node(expr: str) -> str:
    """An agent series with the `node` label of its agent, filtered by $node."""
    return f"({expr}){NODE_JOIN}"


def _query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def graph(
    title: str, unit: str, targets: Sequence[Target], description: str = "", width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .legend(_legend())
        .height(8)
        .span(width)
    )
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def number(title: str, unit: str, expr: str, description: str = "") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(6)
        .with_target(_query(expr, title))
    )


def _variables(board: dash.Dashboard, multi_app: bool = True) -> dash.Dashboard:
    def label_values(name: str, query: str, multi: bool = True) -> dash.QueryVariable:
        var = (
            dash.QueryVariable(name)
            .label(name)
            .query(query)
            .datasource(DATASOURCE)
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(multi)
            .include_all(multi)
        )
        return var.all_value(".*") if multi else var

    return (
        board.with_variable(
            dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .with_variable(label_values("namespace", "label_values(wasmlet_instances, namespace)"))
        .with_variable(
            label_values(
                "app",
                'label_values(wasmlet_instances{namespace=~"$namespace"}, app)',
                multi=multi_app,
            )
        )
        .with_variable(label_values("node", "label_values(wasmlet_agent_info, node)"))
    )


def _board(uid: str, title: str, multi_app: bool = True) -> dash.Dashboard:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .tags(["wasmlet"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )
    return _variables(board, multi_app)


def overview() -> dash.Dashboard:
    rate = f"sum by (namespace, app) (rate(wasmlet_http_requests_total{{{APP}}}[{RATE}]))"
    errors = (
        f'sum by (namespace, app) (rate(wasmlet_http_requests_total{{{APP}, code=~"5.."}}[{RATE}]))'
    )
    return (
        _board("wasmlet-overview", "wasmlet / Overview")
        .with_row(dash.Row("Apps"))
        .with_panel(
            number(
                "Apps", "none",
                f"count(count by (namespace, app) (wasmlet_app_spec_replicas{{{APP}}}))",
                "WasmApps the operator reconciles.",
            )
        )
        .with_panel(
            number(
                "Instances running", "none",
                "sum("
                + on_node(f'sum by (instance) (wasmlet_instances{{{APP}, state="Running"}})')
                + ")",
            )
        )
        .with_panel(number("Requests/s", "reqps", f"sum({rate})"))
        .with_panel(number("5xx ratio", "percentunit", f"sum({errors}) / sum({rate})"))
        .with_panel(
            graph(
                "Desired vs ready replicas", "none",
                [
                    (f"sum by (namespace, app) (wasmlet_app_spec_replicas{{{APP}}})",
                     "{{namespace}}/{{app}} desired"),
                    (f"sum by (namespace, app) (wasmlet_app_status_replicas_ready{{{APP}}})",
                     "{{namespace}}/{{app}} ready"),
                ],
                "What each WasmApp asks for and how many of its instances are ready.",
            )
        )
        .with_panel(
            graph(
                "Instances by node and state", "none",
                [(on_node(f"sum by (instance, state) (wasmlet_instances{{{APP}}})"),
                  "{{node}} {{state}}")],
            )
        )
        .with_panel(graph("Request rate", "reqps", [(rate, "{{namespace}}/{{app}}")]))
        .with_panel(
            graph(
                "Instance errors", "ops",
                [(f"sum by (namespace, app, reason) (rate(wasmlet_instance_exits_total"
                  f'{{{APP}, reason!="Completed"}}[{RATE}]))',
                  "{{namespace}}/{{app}} {{reason}}")],
                "Runs that ended in an error, trap, timeout or a limit.",
            )
        )
        .with_panel(
            graph("5xx ratio", "percentunit", [(f"{errors} / {rate}", "{{namespace}}/{{app}}")])
        )
    )  # fmt: skip


def _cold_start_quantile(q: float, by: str, selector: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, {by}) "
        f"(rate(wasmlet_cold_start_seconds_bucket{{{selector}}}[{RATE}])))"
    )


def cold_start() -> dash.Dashboard:
    return (
        _board("wasmlet-cold-start", "wasmlet / Cold start")
        .with_panel(
            graph(
                "Cold start by phase (p50, p90, p99)", "s",
                [(_cold_start_quantile(q, "phase", APP), f"p{round(q * 100)} {{{{phase}}}}")
                 for q in (0.5, 0.9, 0.99)],
                "pull and compile happen once per module; load and instantiate per start.",
                width=24,
            )
        )
        .with_panel(
            graph(
                "Instantiate p99 by app", "s",
                [(_cold_start_quantile(0.99, "namespace, app", f'{APP}, phase="instantiate"'),
                  "{{namespace}}/{{app}}")],
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Instantiate time")
            .datasource(DATASOURCE)
            .height(8)
            .span(12)
            .with_target(
                _query(
                    f"sum by (le) (rate(wasmlet_cold_start_seconds_bucket"
                    f'{{{APP}, phase="instantiate"}}[{RATE}]))',
                    "{{le}}",
                ).format(PromQueryFormat.HEATMAP)
            )
        )
    )  # fmt: skip


def memory() -> dash.Dashboard:
    running = f'wasmlet_instances{{{APP}, state="Running"}}'
    cpu = f"rate(wasmlet_app_cpu_seconds_total{{{APP}}}[{RATE}])"
    return (
        _board("wasmlet-memory", "wasmlet / Memory and density")
        .with_panel(
            graph(
                "Linear memory per app", "bytes",
                [(f"sum by (namespace, app) (wasmlet_app_linear_memory_bytes{{{APP}}})",
                  "{{namespace}}/{{app}}")],
            )
        )
        .with_panel(
            graph(
                "Linear memory per node", "bytes",
                [(on_node(f"sum by (instance) (wasmlet_app_linear_memory_bytes{{{APP}}})"),
                  "{{node}}")],
            )
        )
        .with_panel(
            graph("Agent RSS", "bytes", [(on_node("process_resident_memory_bytes"), "{{node}}")])
        )
        .with_panel(
            graph(
                "Running instances per node", "none",
                [(on_node(f"sum by (instance) ({running})"), "{{node}}")],
            )
        )
        .with_panel(
            graph(
                "Linear memory per running instance", "bytes",
                [(f"sum by (namespace, app) (wasmlet_app_linear_memory_bytes{{{APP}}})"
                  f" / sum by (namespace, app) ({running})", "{{namespace}}/{{app}}")],
                width=24,
            )
        )
        .with_panel(
            graph(
                "CPU per app", "short",
                [(f"sum by (namespace, app) ({cpu})", "{{namespace}}/{{app}}")],
                "CPU cores the app's instances use (their threads' CPU time per second), "
                "counted while they run: a spinning guest shows here.",
            )
        )
        .with_panel(
            graph("CPU per node", "short", [(on_node(f"sum by (instance) ({cpu})"), "{{node}}")],
                  "CPU cores the instances on each node use.")
        )
    )  # fmt: skip


def app() -> dash.Dashboard:
    by_app = "namespace, app"
    return (
        _board("wasmlet-app", "wasmlet / App", multi_app=False)
        .with_panel(
            graph(
                "Replicas", "none",
                [(f"sum by ({by_app}) (wasmlet_app_spec_replicas{{{APP}}})", "desired"),
                 (f"sum by ({by_app}) (wasmlet_app_status_replicas_ready{{{APP}}})", "ready"),
                 (f"sum by ({by_app}) (wasmlet_app_status_replicas_updated{{{APP}}})",
                  "updated")],
            )
        )
        .with_panel(
            graph(
                "Conditions (1 = True)", "none",
                [(f'max by (condition) (wasmlet_app_status_condition{{{APP}, status="True"}})',
                  "{{condition}}")],
            )
        )
        .with_panel(
            graph(
                "Instances by node and state", "none",
                [(on_node(f"sum by (instance, state) (wasmlet_instances{{{APP}}})"),
                  "{{node}} {{state}}")],
            )
        )
        .with_panel(
            graph(
                "Requests by code", "reqps",
                [(f"sum by (code) (rate(wasmlet_http_requests_total{{{APP}}}[{RATE}]))",
                  "{{code}}")],
            )
        )
        .with_panel(
            graph(
                "Request duration p99", "s",
                [(f"histogram_quantile(0.99, sum by (le) "
                  f"(rate(wasmlet_http_request_duration_seconds_bucket{{{APP}}}[{RATE}])))",
                  "p99")],
            )
        )
        .with_panel(
            graph(
                "Restarts by reason", "ops",
                [(f"sum by (reason) (rate(wasmlet_instance_restarts_total{{{APP}}}[{RATE}]))",
                  "{{reason}}")],
            )
        )
        .with_panel(
            graph(
                "Linear memory", "bytes",
                [(on_node(f"sum by (instance) (wasmlet_app_linear_memory_bytes{{{APP}}})"),
                  "{{node}}")],
            )
        )
        .with_panel(
            graph(
                "CPU", "short",
                [(on_node(f"sum by (instance) (rate(wasmlet_app_cpu_seconds_total{{{APP}}}"
                          f"[{RATE}]))"), "{{node}}")],
                "CPU cores the app's instances use on each node.",
            )
        )
        .with_panel(
            graph("Cold start p99 by phase", "s",
                  [(_cold_start_quantile(0.99, "phase", APP), "{{phase}}")])
        )
    )  # fmt: skip


BOARDS = {
    "wasmlet-overview.json": overview,
    "wasmlet-cold-start.json": cold_start,
    "wasmlet-memory.json": memory,
    "wasmlet-app.json": app,
}


def _numbered(board: models.Dashboard) -> models.Dashboard:
    """Panel ids 1..n in layout order (Grafana keys links and state by them)."""
    for i, panel in enumerate(board.panels or [], start=1):
        panel.id_val = i
    return board


def dashboards_json() -> dict[str, str]:
    """File name → the dashboard's JSON, as Grafana imports it."""
    return {
        name: json.dumps(_numbered(build().build()), cls=JSONEncoder, indent=2, sort_keys=True)
        + "\n"
        for name, build in BOARDS.items()
    }
