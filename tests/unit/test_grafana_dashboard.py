"""The Grafana dashboard in deploy/grafana queries only series the bot exports, and shows every business metric."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

import bot.slack_metrics  # noqa: F401  (registers the Slack front door's metrics)
import runtime.observability  # noqa: F401  (registers the bot's metrics)

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "aios.json"

BUSINESS_METRICS = {
    "aios_actions_executed_total",
    "aios_money_moved_usd_total",
    "aios_approvals_waiting",
    "aios_approval_oldest_wait_seconds",
    "aios_time_to_approval_seconds_bucket",
    "aios_model_tokens_total",
    "aios_model_cost_usd_total",
    "aios_automation_cost_usd_sum",
    "aios_compensations_total",
    "aios_escalations_total",
    "aios_slack_ack_seconds_bucket",
}


def _exported_series() -> set[str]:
    return {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        # A labelled family with no child yet has no samples: name its series from its type.
        f"{family.name}{suffix}"
        for family in REGISTRY.collect()
        for suffix in {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",),
        }.get(family.type, ())
    }


def _queried_series(dashboard: dict[str, Any]) -> set[str]:
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert expressions, "the dashboard has no queries"
    return {name for expression in expressions for name in re.findall(r"\baios_[a-z_]+", expression)}


def test_the_dashboard_is_valid_json_and_queries_what_the_bot_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = _queried_series(dashboard)
    assert queried - _exported_series() == set(), "the dashboard asks for series the bot does not export"
    assert BUSINESS_METRICS - queried == set(), "a business metric has no panel"


def test_panels_do_not_overlap_and_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
