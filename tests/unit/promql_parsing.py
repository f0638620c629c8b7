"""Reading PromQL the way the dashboard test needs: which metrics an expression names, inside
which function calls, and which functions it calls. Not a full parser: strings, label matchers,
ranges, grouping clauses and Grafana variables are blanked out first, then identifiers followed by
``(`` are calls and the other identifiers, keywords aside, are metric names."""

from __future__ import annotations

import re
from dataclasses import dataclass

# aggregation operators, functions, and the @ modifier's start() and end()
# fmt: off
FUNCTIONS = frozenset((
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio", "abs", "absent", "absent_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "day_of_month", "day_of_week", "day_of_year",
    "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "double_exponential_smoothing", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
    "sort_by_label", "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
    "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos",
    "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi", "start", "end",
))
KEYWORDS = frozenset((
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "atan2", "inf", "nan",
))
# fmt: on

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLE = re.compile(r"\$__\w+|\$\{[^}]*\}|\$\w+")
_TOKEN = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?|(\()|(\))")
_TEMPLATE_FUNCTION = re.compile(r"^\s*(label_values|query_result|label_names|metrics)\((.*)\)\s*$")


def _blanked(expr: str) -> str:
    """The expression without string literals, Grafana variables, label matchers, ranges and
    grouping clauses (``by (le)``, ``on (pod) group_left (node)``)."""
    text = _VARIABLE.sub(" ", _STRING.sub('""', expr))
    return _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))


@dataclass(frozen=True)
class Use:
    """One metric named in a query, and the functions around it (innermost last)."""

    name: str
    calls: tuple[str, ...]


def metric_uses(expr: str) -> list[Use]:
    """The metric names in a PromQL expression: not functions, keywords, label names, label
    values, durations, numbers or Grafana variables."""
    uses: list[Use] = []
    stack: list[str] = []
    for match in _TOKEN.finditer(_blanked(expr)):
        word, call, opening, closing = match.groups()
        if opening:
            stack.append("")
        elif closing:
            if stack:
                stack.pop()
        elif call:
            stack.append(word)
        elif word not in KEYWORDS:
            uses.append(Use(word, tuple(f for f in stack if f)))
    return uses


def called_functions(expr: str) -> set[str]:
    return {m.group(1) for m in _TOKEN.finditer(_blanked(expr)) if m.group(2)}


def template_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query (``label_values(m{...}, label)``,
    ``query_result(expr)``), without the label argument."""
    match = _TEMPLATE_FUNCTION.match(query)
    if not match:
        return query
    function, inner = match.groups()
    if function == "label_values":
        blanked = _STRING.sub(lambda m: "_" * len(m.group()), inner)  # commas in label values
        series, _, _label = blanked.rpartition(",")
        return inner[: len(series)] if series else ""
    return inner if function == "query_result" else ""
