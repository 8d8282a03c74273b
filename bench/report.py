"""Pure helpers: percentiles, Prometheus text parsing, the table and the final line."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FINAL_KEYS = (
    "steps_per_s",
    "ceiling_writes_per_s",
    "ratio",
    "writes_per_step",
    "api_writes_per_step",
    "cpu_ms_per_step",
    "p50_ms",
    "p99_ms",
    "idle_p50_ms",
    "rss_mb",
)
PROCESS_PREFIX = "cpu_ms_"
"""Each process's CPU ms per step follows the fixed keys, as ``cpu_ms_<process>=…``."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; NaN if empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    frac = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * frac)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max in milliseconds."""
    return {
        "count": float(len(seconds)),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds) * 1000 if seconds else math.nan,
    }


_SAMPLE = re.compile(
    r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)"
)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text format -> {metric name: {sorted label pairs: value}} (comments skipped)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group("labels") or "")))
        out.setdefault(match.group("name"), {})[labels] = value
    return out


def metric_sum(
    metrics: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]],
    name: str,
    **labels: str,
) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for pairs, value in metrics.get(name, {}).items():
        have = dict(pairs)
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.01 else f"{value:.4f}"


def final_line(values: Mapping[str, float]) -> str:
    """The last line: ``steps_per_s=… ceiling_writes_per_s=… ratio=… … rss_mb=… cpu_ms_…=…``.

    ``api_writes_per_step`` counts status writes and Events (both are apiserver writes);
    ``cpu_ms_per_step`` is the CPU of every process of the run (apiserver, etcd, broker,
    operator, workers) per recorded step, and each process's share follows as
    ``cpu_ms_<process>=…``; ``p50_ms``/``p99_ms`` are the loaded batch's step-to-step,
    ``idle_p50_ms`` the one-saga-at-a-time probe's (the latency a lone saga sees).
    """
    parts = []
    for key in FINAL_KEYS:
        value = float(values.get(key, math.nan))
        if key in ("ratio", "writes_per_step", "api_writes_per_step"):
            text = "nan" if math.isnan(value) else f"{value:.2f}"
        else:
            text = _fmt(value)
        parts.append(f"{key}={text}")
    parts += [
        f"{key}={_fmt(float(value))}"
        for key, value in values.items()
        if key.startswith(PROCESS_PREFIX) and key not in FINAL_KEYS
    ]
    return " ".join(parts)


def final_values(results: Mapping[str, Any]) -> dict[str, float]:
    """The final line's numbers from a results document (NaN for what was not measured)."""
    e2e = results.get("e2e") or {}
    ceiling = results.get("ceiling") or {}
    scale = results.get("scale") or {}
    steps_per_s = float(e2e.get("steps_per_s", math.nan))
    ceiling_rate = float((ceiling.get("concurrent") or {}).get("writes_per_s", math.nan))
    ratio = (
        steps_per_s / ceiling_rate if ceiling_rate and not math.isnan(ceiling_rate) else math.nan
    )
    s2s = e2e.get("step_to_step") or {}
    idle = e2e.get("probe_step_to_step") or {}
    per_process = e2e.get("cpu_ms_per_step") or {}
    cpu_ms = math.fsum(float(v) for v in per_process.values()) if per_process else math.nan
    return {
        "steps_per_s": steps_per_s,
        "ceiling_writes_per_s": ceiling_rate,
        "ratio": ratio,
        "writes_per_step": float(e2e.get("writes_per_step", math.nan)),
        "api_writes_per_step": float(e2e.get("api_writes_per_step", math.nan)),
        "cpu_ms_per_step": cpu_ms,
        "p50_ms": float(s2s.get("p50_ms", math.nan)),
        "p99_ms": float(s2s.get("p99_ms", math.nan)),
        "idle_p50_ms": float(idle.get("p50_ms", math.nan)),
        "rss_mb": float(scale.get("operator_peak_rss_mb", math.nan)),
    } | {f"{PROCESS_PREFIX}{name}": float(ms) for name, ms in per_process.items()}


def table(rows: Iterable[tuple[str, str, str | float]]) -> str:
    """A plain three-column table: phase, measure, value."""
    cells = [(a, b, c if isinstance(c, str) else _fmt(float(c))) for a, b, c in rows]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    widths = [max(w, len(h)) for w, h in zip(widths, ("phase", "measure", "value"), strict=True)]
    lines = [
        f"{'phase':<{widths[0]}}  {'measure':<{widths[1]}}  {'value':>{widths[2]}}",
        f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * widths[2]}",
    ]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in cells]
    return "\n".join(lines)
