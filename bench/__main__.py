"""``python -m bench [--quick]``: raw write ceiling, end to end, and scale, on one platform.

Uses the platform in KUBECONFIG + KUBESAGA_AMQP_URL when KUBESAGA_USE_EXISTING=1; otherwise
``hack/testenv.sh up`` (which reuses a running platform of the same state dir) and, if that
started anything, ``hack/testenv.sh down`` at the end. Every phase has its own namespace and
queues, removed afterwards. Logs, worker timings and profiles go to bench/results/<ts>.tmp/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ceiling, e2e, platform, scale
from bench.procs import PhaseConfig, delete_queues
from bench.procstat import CpuMeter, load_average, machine_info
from bench.replicas import share_text
from bench.report import final_line, final_values, table
from kubesaga.broker.topology import ACTION_QUEUE_PREFIX
from kubesaga.demo.cluster import apply_crd
from kubesaga.settings import Settings
from kubesaga.store import make_api_client

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--sagas", type=int, help="end-to-end sagas (default 500, quick 100)")
    parser.add_argument("--steps", type=int, default=3, help="steps per saga (default 3)")
    parser.add_argument("--scale-sagas", type=int, help="scale phase sagas (10000, quick 1000)")
    parser.add_argument("--scale-drain-seconds", type=float, help="bound of the drain (120/15)")
    parser.add_argument(
        "--no-drain", action="store_true", help="scale: stop once all are in flight (no workers)"
    )
    parser.add_argument(
        "--scale-create-seconds", type=float, help="bound of the scale creates (240, quick 30)"
    )
    parser.add_argument("--window-seconds", type=float, help="drain window (10, quick 3)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="per worker (default 64)")
    parser.add_argument("--create-concurrency", type=int, default=16, help="creates in flight")
    parser.add_argument("--writers", type=int, default=16, help="ceiling concurrent writers")
    parser.add_argument("--objects", type=int, default=50, help="ceiling objects")
    parser.add_argument(
        "--events",
        choices=("all", "phases", "none"),
        default=Settings.model_fields["events"].default,
        help="operator Events (default: the operator's own default)",
    )
    parser.add_argument("--log-level", default="INFO", help="operator and worker log level")
    parser.add_argument(
        "--replicas", type=int, default=1, help="operator replicas sharing the work (e2e)"
    )
    parser.add_argument(
        "--operator-cpu",
        type=float,
        help="cgroup v1 CPU quota per operator replica, in cores (e.g. 0.25; needs root)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the operator in e2e")
    parser.add_argument(
        "--phases", default="ceiling,e2e,scale", help="comma separated subset to run"
    )
    parser.add_argument("--timeout", type=float, help="bound of the e2e phase (300, quick 60)")
    parser.add_argument("--keep-logs", action="store_true", help="keep results/<ts>.tmp/")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sagas = args.sagas or (100 if quick else 500)
    args.scale_sagas = args.scale_sagas or (1000 if quick else 10_000)
    args.scale_drain_seconds = args.scale_drain_seconds or (15.0 if quick else 120.0)
    args.scale_create_seconds = args.scale_create_seconds or (30.0 if quick else 240.0)
    args.window_seconds = args.window_seconds or (3.0 if quick else 10.0)
    args.timeout = args.timeout or (60.0 if quick else 300.0)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    return args


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=platform.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str | float]]:
    out: list[tuple[str, str, str | float]] = []
    c = results.get("ceiling")
    if c:
        for kind in ("sequential", "concurrent"):
            r = c[kind]
            label = f"{kind} ({r['objects']} obj, {r['writers']} writers)"
            out.append(("ceiling", f"{label} writes/s", r["writes_per_s"]))
            out.append(("ceiling", f"{label} p50/p99 ms", f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"))
            out.append(("ceiling", f"{kind} CPU cores", _cpu_text(r["cpu"])))
            per_write = (
                " ".join(f"{k}={1000 * v['cpu_s'] / r['writes']:.2f}" for k, v in r["cpu"].items())
                if r["writes"]
                else "nan"
            )
            out.append(("ceiling", f"{kind} CPU ms per write", per_write))
    e = results.get("e2e")
    if e:
        out += [
            ("e2e", "sagas x steps", f"{e['sagas']} x {e['steps_per_saga']}"),
            ("e2e", "finished / completed", f"{e['finished']} / {e['completed']}"),
            ("e2e", "steps/s", e["steps_per_s"]),
            ("e2e", "seconds", e["seconds"]),
            ("e2e", "completion p50/p99 ms", _pair(e["completion"])),
            ("e2e", "step-to-step p50/p99 ms", _pair(e["step_to_step"])),
            (
                "e2e",
                f"idle step-to-step p50/p99 ms ({e['probe_sagas']} sagas one by one)",
                _pair(e["probe_step_to_step"]),
            ),
            ("e2e", "status writes / step", e["writes_per_step"]),
            ("e2e", "apiserver writes / step (status + Events)", e["api_writes_per_step"]),
            ("e2e", "409 conflicts", e["conflicts_409"]),
            ("e2e", "409 conflicts / step", e.get("conflicts_per_step", math.nan)),
            (
                "e2e",
                f"replicas ({e.get('operators', 1)}, cap {e.get('operator_cpu_quota_cores')}"
                " cores): shards/share/CPU ms per step",
                share_text(e.get("replicas") or []),
            ),
            ("e2e", "operator CPU s", e["operator_cpu_s"]),
            ("e2e", "operator peak RSS MB", e["operator_peak_rss_mb"]),
            ("e2e", "CPU cores", _cpu_text(e["cpu"])),
            (
                "e2e",
                "CPU ms per step",
                " ".join(f"{k}={v:.2f}" for k, v in e["cpu_ms_per_step"].items()),
            ),
        ]
    s = results.get("scale")
    if s:
        out += [
            ("scale", "sagas created", s["created"]),
            ("scale", "creates/s", s["creates_per_s"]),
            ("scale", "all in flight after s", s["in_flight_after_s"]),
            ("scale", "operator RSS in flight MB", s["operator_rss_in_flight_mb"]),
            ("scale", "operator peak RSS MB", s["operator_peak_rss_mb"]),
            ("scale", "operator RSS per saga in flight KB", s["operator_rss_per_saga_kb"]),
            ("scale", "platform before", _footprint_text(s["platform_before"])),
            ("scale", "platform in flight", _footprint_text(s["platform_in_flight"])),
            ("scale", "drain steps/s (overall)", s["drain_steps_per_s"]),
            (
                "scale",
                "drain window steps/s min/max",
                f"{s['window_steps_per_s_min']} / {s['window_steps_per_s_max']}",
            ),
            ("scale", "finished in drain bound", f"{s['drain_finished_sagas']} / {s['created']}"),
            ("scale", "drain CPU cores", _cpu_text(s["drain_cpu"])),
        ]
    return out


def _footprint_text(f: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in f.items())


def _pair(summary: dict[str, float]) -> str:
    return f"{summary['p50_ms']:.1f} / {summary['p99_ms']:.1f}"


def _cpu_text(cpu: dict[str, dict[str, float]]) -> str:
    return " ".join(f"{name}={v['cores']:.2f}" for name, v in cpu.items())


async def main(args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp.lower()}-{uuid.uuid4().hex[:4]}"
    work = RESULTS_DIR / f"{stamp}.tmp"
    work.mkdir(parents=True, exist_ok=True)
    plat = platform.acquire()
    results: dict[str, Any] = {
        "run": stamp,
        "commit": _git_commit(),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": machine_info(),
        "platform": {"started_here": plat.started_here, "pids": plat.pids},
    }
    queues: list[str] = []
    namespaces: list[str] = []
    api = await make_api_client(plat.kubeconfig)
    try:
        await apply_crd(api)
        results["machine"]["kube_apiserver"] = await platform.apiserver_version(api)

        def phase_cfg(phase: str) -> PhaseConfig:
            name = f"bench-{run_id}-{phase}"
            action = f"bench.{run_id}.{phase}"
            cfg = PhaseConfig(
                namespace=name,
                action=action,
                results_queue=f"{name}.results",
                dead_letter_queue=f"{name}.dead-letter",
                work_dir=work / phase,
                events=args.events,
                log_level=args.log_level,
            )
            cfg.work_dir.mkdir(parents=True, exist_ok=True)
            queues.extend([cfg.results_queue, cfg.dead_letter_queue, ACTION_QUEUE_PREFIX + action])
            return cfg

        if "ceiling" in args.phases:
            ns = f"bench-{run_id}-ceiling"
            await platform.create_namespace(api, ns)
            namespaces.append(ns)
            print(f"bench: ceiling ({args.objects} objects, {args.writers} writers)", flush=True)
            results["ceiling"] = await ceiling.run(
                api,
                ns,
                sequential_writes=500 if args.quick else 3000,
                concurrent_writes=2000 if args.quick else 10_000,
                objects=args.objects,
                writers=args.writers,
                seconds=8.0 if args.quick else 30.0,
                meter=CpuMeter({**plat.pids, "bench": [os.getpid()]}),
            )
            await platform.delete_namespace(api, ns)
        if "e2e" in args.phases:
            cfg = phase_cfg("e2e")
            await platform.create_namespace(api, cfg.namespace)
            namespaces.append(cfg.namespace)
            print(f"bench: e2e ({args.sagas} sagas x {args.steps} steps)", flush=True)
            results["e2e"] = await e2e.run(
                api,
                cfg,
                amqp_url=plat.amqp_url,
                sagas=args.sagas,
                steps=args.steps,
                workers=args.workers,
                concurrency=args.concurrency,
                create_concurrency=args.create_concurrency,
                timeout=args.timeout,
                platform_pids=plat.pids,
                profile=args.profile,
                operators=args.replicas,
                operator_cpu=args.operator_cpu,
                run_id=run_id,
            )
            await platform.delete_namespace(api, cfg.namespace)
        if "scale" in args.phases:
            cfg = phase_cfg("scale")
            await platform.create_namespace(api, cfg.namespace)
            namespaces.append(cfg.namespace)
            print(f"bench: scale ({args.scale_sagas} sagas in flight)", flush=True)
            results["scale"] = await scale.run(
                api,
                cfg,
                amqp_url=plat.amqp_url,
                sagas=args.scale_sagas,
                steps=args.steps,
                workers=args.workers,
                concurrency=args.concurrency,
                create_concurrency=args.create_concurrency,
                create_seconds=args.scale_create_seconds,
                drain_seconds=args.scale_drain_seconds,
                window_seconds=args.window_seconds,
                platform_pids=plat.pids,
                drain=not args.no_drain,
            )
            await platform.delete_namespace(api, cfg.namespace)
    finally:
        for ns in namespaces:
            try:
                await platform.delete_namespace(api, ns)
            except Exception as error:  # cleanup is best effort; say so
                print(f"bench: could not delete namespace {ns}: {error}", file=sys.stderr)
        await delete_queues(plat.amqp_url, queues)
        await api.close()
        platform.release(plat)
    results["machine"]["loadavg_end"] = load_average()
    results["final"] = {k: (None if math.isnan(v) else v) for k, v in final_values(results).items()}
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows(results)))
    print(f"machine: {_machine_text(results['machine'])}")
    print(f"results: {path.relative_to(platform.REPO_ROOT)}")
    print(final_line(final_values(results)))
    return 0


def _machine_text(m: dict[str, Any]) -> str:
    return (
        f"{m.get('cores')} cores, {m.get('memory_gb')} GB, python {m.get('python')}, "
        f"kube-apiserver {m.get('kube_apiserver')}, load {m.get('loadavg_start')} -> "
        f"{m.get('loadavg_end')}"
    )


if __name__ == "__main__":
    started = time.monotonic()
    code = asyncio.run(main(parse_args()))
    print(f"bench: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    sys.exit(code)
