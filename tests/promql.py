"""What the shipped dashboard and alert rules read: the series each PromQL expression
names, with the labels its selectors match on."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/dashboards/saga.json"
PROMETHEUS = ROOT / "deploy/prometheus"
ALERTS = PROMETHEUS / "alerts.yml"

_SELECTOR = re.compile(r"\b(saga_[a-z_]+|up)\b(?:\{([^}]*)\})?")
# Label lists of aggregations and vector matching: label names, not series.
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def dashboard_expressions() -> list[str]:
    """Every query of every panel of the dashboard."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of the alert rules file."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """The series an expression selects, each with the label names it matches on."""
    bare = _GROUPING.sub(" ", expr)
    return [(m[1], set(_MATCHER.findall(m[2] or ""))) for m in _SELECTOR.finditer(bare)]
