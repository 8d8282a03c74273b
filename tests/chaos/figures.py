"""What a chaos run reports: counts of faults and outcomes, and per fault window what the fault
did to throughput, latency and readiness while it lasted, and how long recovery took.

Times are ``time.monotonic()``. Per window (a fault from its start to its end):
- ``done/s``: sagas reaching their final phase per second during the window, against the same
  rate outside every window (``base``);
- ``p50``/``p95``: end-to-end latency (created -> seen final) of the sagas alive during the
  window, against the sagas that met no fault (``base``);
- ``resume``: from the window's end to the first status change after it (0 when progress never
  stopped);
- ``drain``: from the window's end until every saga created before it was final;
- ``unready``: the share of /readyz samples of the operators that said 503 during the window,
  and ``ready again``: from the window's end to the last 503 after it (before the next fault).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Window:
    name: str
    start: float
    end: float = 0.0


@dataclass
class Timeline:
    """When things happened in a run, for the per-window figures."""

    created: dict[str, float] = field(default_factory=dict)
    final_at: dict[str, float] = field(default_factory=dict)
    status_changes: list[float] = field(default_factory=list)
    probes: list[tuple[float, bool]] = field(default_factory=list)
    """(time, ready) per /readyz sample of any operator."""
    windows: list[Window] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def window_lines(t: Timeline) -> list[str]:
    """One line per fault window, and a baseline line."""
    if not t.created or not t.windows:
        return []
    start = min(t.created.values())
    end = max(t.final_at.values(), default=start)

    def in_any(x: float) -> bool:
        return any(w.start <= x <= w.end for w in t.windows)

    def overlaps(name: str, w: Window) -> bool:
        return t.created[name] <= w.end and t.final_at.get(name, end) >= w.start

    clean = [n for n in t.created if n in t.final_at and not any(overlaps(n, w) for w in t.windows)]
    base_latency = [t.final_at[n] - t.created[n] for n in clean]
    faulted_time = sum(min(w.end, end) - max(w.start, start) for w in t.windows if w.end > start)
    clean_time = max(1e-9, (end - start) - faulted_time)
    base_rate = sum(1 for x in t.final_at.values() if not in_any(x)) / clean_time
    lines = [
        f"baseline: done/s={base_rate:.2f} p50={_pct(base_latency, 0.5):.1f}s "
        f"p95={_pct(base_latency, 0.95):.1f}s (sagas that met no fault: {len(clean)})"
    ]
    starts = sorted(w.start for w in t.windows)
    for w in t.windows:
        length = max(1e-9, w.end - w.start)
        following = min((x for x in starts if x > w.start), default=float("inf"))
        done = sum(1 for x in t.final_at.values() if w.start <= x <= w.end)
        alive = [n for n in t.created if overlaps(n, w) and n in t.final_at]
        latency = [t.final_at[n] - t.created[n] for n in alive]
        after = [x for x in t.status_changes if x > w.end]
        during = [x for x in t.status_changes if w.start <= x <= w.end]
        resume = 0.0 if during and after and after[0] - during[-1] < 1.0 else _first(after, w.end)
        backlog = [t.final_at.get(n, end) for n in t.created if t.created[n] <= w.end]
        drain = max(0.0, max(backlog, default=w.end) - w.end)
        samples = [ok for x, ok in t.probes if w.start <= x <= w.end]
        unready = 100.0 * samples.count(False) / len(samples) if samples else float("nan")
        late = [x for x, ok in t.probes if w.end < x < following and not ok]
        ready_again = (max(late) - w.end) if late else 0.0
        lines.append(
            f"{w.name}: {length:.1f}s done/s={done / length:.2f} (base {base_rate:.2f}) "
            f"p50={_pct(latency, 0.5):.1f}s p95={_pct(latency, 0.95):.1f}s "
            f"(base {_pct(base_latency, 0.5):.1f}/{_pct(base_latency, 0.95):.1f}s) "
            f"resume={resume:.1f}s drain={drain:.1f}s unready={unready:.0f}% "
            f"ready again={ready_again:.1f}s"
        )
    return lines


def _first(after: list[float], since: float) -> float:
    return after[0] - since if after else float("nan")


@dataclass
class Figures:
    scenario: str = ""
    sagas: int = 0
    operator_kills: int = 0
    operator_restarts: int = 0
    worker_kills: int = 0
    worker_kills_mid_step: int = 0
    worker_restarts: int = 0
    start_failures: int = 0
    """Processes that exited before they were ready after a kill (and were started again)."""
    broker_restarts: int = 0
    control_plane_restarts: int = 0
    network_faults: int = 0
    duplicates_injected: int = 0
    stale_injected: int = 0
    injections_failed: int = 0
    label_patches: int = 0
    label_patch_errors: int = 0
    conflicts_409: int = 0
    status_writes: int = 0
    dead_letters: int = 0
    stale_dead_lettered: int = 0
    handler_reruns: int = 0
    replicas_added: int = 0
    replicas_removed: int = 0
    lost: int = 0
    stuck: int = 0
    seconds: float = 0.0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        head = (
            f"[{self.scenario}] sagas={self.sagas} kills={self.operator_kills} "
            f"restarts={self.operator_restarts + self.worker_restarts} "
            f"broker_restarts={self.broker_restarts} "
            f"control_plane_restarts={self.control_plane_restarts} "
            f"network_faults={self.network_faults} "
            f"duplicates_injected={self.duplicates_injected} "
            f"stale_injected={self.stale_injected} label_patches={self.label_patches} "
            f"lost={self.lost} stuck={self.stuck} seconds={self.seconds:.1f}"
        )
        detail = (
            f"operator kills={self.operator_kills} restarts={self.operator_restarts}; "
            f"worker kills={self.worker_kills} (mid-step {self.worker_kills_mid_step}) "
            f"restarts={self.worker_restarts}; start failures={self.start_failures}; "
            f"handler re-runs of a dispatch id={self.handler_reruns}; "
            f"injections failed (broker down)={self.injections_failed}; "
            f"label patch errors={self.label_patch_errors}; 409 conflicts={self.conflicts_409}; "
            f"status writes={self.status_writes}; replicas added={self.replicas_added} "
            f"removed={self.replicas_removed}; dead letters={self.dead_letters} "
            f"(stale injected and dead-lettered {self.stale_dead_lettered})"
        )
        reasons = ", ".join(f"{k}: {v}" for k, v in self.dead_letter_reasons.most_common())
        return [head, detail, f"dead-letter reasons: {reasons or 'none'}"]
