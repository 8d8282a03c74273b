"""The bench harness's pure parts: percentiles, Prometheus parsing, step gaps, the final line."""

from __future__ import annotations

import math
import re

import pytest
from bench.e2e import step_gaps
from bench.report import final_line, final_values, metric_sum, parse_prometheus, percentile

FINAL_LINE = re.compile(
    r"^steps_per_s=\S+ ceiling_writes_per_s=\S+ ratio=\S+ writes_per_step=\S+ "
    r"api_writes_per_step=\S+ cpu_ms_per_step=\S+ p50_ms=\S+ p99_ms=\S+ idle_p50_ms=\S+ "
    r"rss_mb=\S+( cpu_ms_[a-z-]+=\S+)*$"
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 50) == 2  # order of input does not matter
    assert percentile([7.0], 99) == 7
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_parse_prometheus_and_sum_by_labels() -> None:
    text = "\n".join(
        [
            "# HELP kubesaga_results_total Results received, by verdict.",
            "# TYPE kubesaga_results_total counter",
            'kubesaga_results_total{verdict="applied"} 300.0',
            'kubesaga_results_total{verdict="duplicate"} 2.0',
            "kubesaga_status_writes_total 400.0",
            'kubesaga_sagas{phase="Completed"} 100.0',
        ]
    )
    metrics = parse_prometheus(text)
    assert metric_sum(metrics, "kubesaga_results_total") == 302
    assert metric_sum(metrics, "kubesaga_results_total", verdict="applied") == 300
    assert metric_sum(metrics, "kubesaga_status_writes_total") == 400
    assert metric_sum(metrics, "missing_total") == 0


def test_step_gaps_use_the_last_attempt_and_skip_missing_steps() -> None:
    records = [
        ["a", "s0", 1, 0.000, 0.001],
        ["a", "s1", 1, 0.011, 0.012],
        ["a", "s2", 1, 0.030, 0.031],
        ["b", "s0", 1, 1.000, 1.001],
        ["b", "s0", 2, 1.100, 1.101],  # retried: the last attempt counts
        ["b", "s1", 1, 1.121, 1.122],
        ["c", "s1", 1, 5.0, 5.0],  # s0 never seen: no gap
    ]
    gaps = sorted(step_gaps(records, steps=3))
    assert gaps == pytest.approx([0.010, 0.018, 0.020])


def test_final_line_format_and_ratio() -> None:
    results = {
        "ceiling": {"concurrent": {"writes_per_s": 900.0}},
        "e2e": {
            "steps_per_s": 450.0,
            "writes_per_step": 1.3333,
            "api_writes_per_step": 2.6667,
            "cpu_ms_per_step": {"kube-apiserver": 6.4, "operator": 3.0, "etcd": 0.45},
            "step_to_step": {"p50_ms": 8.25, "p99_ms": 31.0},
            "probe_step_to_step": {"p50_ms": 4.5, "p99_ms": 9.0},
        },
        "scale": {"operator_peak_rss_mb": 512.4},
    }
    values = final_values(results)
    assert values["ratio"] == pytest.approx(0.5)
    line = final_line(values)
    assert FINAL_LINE.match(line), line
    assert line == (
        "steps_per_s=450 ceiling_writes_per_s=900 ratio=0.50 writes_per_step=1.33 "
        "api_writes_per_step=2.67 cpu_ms_per_step=9.85 p50_ms=8.25 p99_ms=31.0 idle_p50_ms=4.50 "
        "rss_mb=512 cpu_ms_kube-apiserver=6.40 cpu_ms_operator=3.00 cpu_ms_etcd=0.45"
    )


def test_final_line_says_nan_for_what_was_not_measured() -> None:
    line = final_line(final_values({}))
    assert FINAL_LINE.match(line), line
    assert "ratio=nan" in line and "rss_mb=nan" in line and "cpu_ms_per_step=nan" in line


def test_replicas_metrics_are_summed_sample_by_sample() -> None:
    from bench.replicas import merged

    one = parse_prometheus('kubesaga_results_total{verdict="applied"} 3\nkubesaga_x 1\n')
    two = parse_prometheus('kubesaga_results_total{verdict="applied"} 4\n')
    total = merged([one, two])
    assert metric_sum(total, "kubesaga_results_total", verdict="applied") == 7
    assert metric_sum(total, "kubesaga_x") == 1
