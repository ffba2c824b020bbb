"""Just enough PromQL reading to check alert rules and dashboard queries against the contract.

Not a parser: it strips strings, label matchers, ranges and grouping clauses, then
reads what is left. It refuses nothing and understands only the PromQL these files use;
its tests are the rule and dashboard tests that call it.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from agent.metrics import METRIC_LABELS, Metrics

__all__ = ["SCRAPE_LABELS", "contract_series", "label_names", "metric_names"]

#: Labels the scrape adds to every series (job/instance by Prometheus, node by relabeling;
#: cluster where a multi-cluster Prometheus sets it as a target label).
SCRAPE_LABELS = frozenset({"job", "instance", "node", "cluster"})

_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on",
                       "ignoring", "group_left", "group_right", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (``up``, ``pulldoctor_x_total``...)."""
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # an operator keyword, or a function / aggregation call
        before = text[match.start() - 1] if match.start() else " "
        if before == "$" or before == "." or before.isdigit():
            continue  # a Grafana variable or part of a number (1e3)
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    labels = set()
    for body in _MATCHERS.findall(text):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", body))
    for body in _GROUPING.findall(text):
        labels |= {name.strip() for name in body.split(",") if name.strip()}
    return labels


def contract_series() -> dict[str, frozenset[str]]:
    """Every series name the agent can expose, with its label names (``le`` for buckets)."""
    registry = CollectorRegistry()
    Metrics(registry, version="0")
    out: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        if family.type == "counter":
            base = METRIC_LABELS[family.name + "_total"]
            out[family.name + "_total"] = frozenset(base)
        elif family.type == "histogram":
            base = METRIC_LABELS[family.name]
            out[family.name + "_bucket"] = frozenset(base) | {"le"}
            out[family.name + "_count"] = frozenset(base)
            out[family.name + "_sum"] = frozenset(base)
        else:
            out[family.name] = frozenset(METRIC_LABELS[family.name])
    return out
