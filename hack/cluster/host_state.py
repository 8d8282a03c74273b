"""What a one-node cluster changes on its host, captured before ``up`` and restored by ``down``.

kubelet, kube-proxy, containerd and the CNI plugins write host-global state: sysctls (kubelet sets
``vm.overcommit_memory``, ``kernel.panic``...; the bridge plugin turns on ``ip_forward``), iptables
chains and rules (kubelet's KUBE-FIREWALL and canaries survive ``kube-proxy --cleanup``), mounts
(netns bind mounts, projected volumes, overlay root filesystems), cgroups (``kubepods``) and links
(the bridge). Instead of a list of known side effects, which goes stale with every upgrade, this
records those five things as they are and later undoes any difference.

    python3 host_state.py save FILE      record the host now (JSON)
    python3 host_state.py diff FILE      print what differs from FILE; exit 1 if anything does
    python3 host_state.py restore FILE   undo the differences (best effort), then print what remains

Runs as root on Linux with iptables-save/ip6tables-save, ``ip`` and ``sysctl`` (procps).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

# Counters and random values that change by themselves.
VOLATILE_SYSCTLS = (
    "fs.dentry-state",
    "fs.file-nr",
    "fs.inode-nr",
    "fs.inode-state",
    "fs.quota.",
    "kernel.ns_last_pid",
    "kernel.random.",
    "kernel.pty.nr",
    "net.netfilter.nf_conntrack_count",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_DEPTH = 3
# Cgroups this machine's own tooling creates and removes per command (not the node's business).
FOREIGN_CGROUPS = ("process_api",)


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout


def sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in _run("sysctl", "-a").splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not key.startswith(VOLATILE_SYSCTLS):
            values[key] = value
    return values


def iptables() -> dict[str, list[str]]:
    """Per family and table: chain declarations (``:NAME``) and rules (``-A ...``), no counters."""
    out: dict[str, list[str]] = {}
    for family in ("iptables", "ip6tables"):
        table = ""
        for line in _run(f"{family}-save").splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                out.setdefault(f"{family} {table}", []).append(" ".join(line.split()[:2]))
            elif line.startswith("-A"):
                out.setdefault(f"{family} {table}", []).append(line)
    return out


def mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4])
    return sorted(set(points))


def cgroups() -> list[str]:
    found = []
    for controller in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        if not controller.is_dir() or controller.is_symlink():
            continue
        for dirpath, dirnames, _ in os.walk(controller):
            depth = len(Path(dirpath).relative_to(controller).parts)
            if depth >= CGROUP_DEPTH:
                dirnames.clear()
            if depth and Path(dirpath).relative_to(controller).parts[0] not in FOREIGN_CGROUPS:
                found.append(dirpath)
    return sorted(found)


def links() -> list[str]:
    names = []
    for line in _run("ip", "-o", "link", "show").splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.append(parts[1].strip().split("@")[0])
    return sorted(names)


class Snapshot(TypedDict):
    sysctl: dict[str, str]
    iptables: dict[str, list[str]]
    mounts: list[str]
    cgroups: list[str]
    links: list[str]
    paths: list[str]


LISTS = ("mounts", "cgroups", "links", "paths")
# Host paths a node writes outside its own state dir (kubelet log links, the CNI library's cache,
# network namespaces) and the usual homes of its parts: none may appear and stay.
HOST_PATHS = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/var/lib/containerd",
    "/etc/cni/net.d/10-kubesaga.conflist",
    "/etc/containerd/config.toml",
)


def paths() -> list[str]:
    found = [p for p in HOST_PATHS if os.path.lexists(p)]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [str(entry) for entry in netns.iterdir()]
    return sorted(found)


def snapshot() -> Snapshot:
    return {
        "sysctl": sysctls(),
        "iptables": iptables(),
        "mounts": mounts(),
        "cgroups": cgroups(),
        "links": links(),
        "paths": paths(),
    }


def _items(snap: Snapshot, kind: str) -> set[str]:
    lists = {
        "mounts": snap["mounts"],
        "cgroups": snap["cgroups"],
        "links": snap["links"],
        "paths": snap["paths"],
    }
    return set(lists[kind])


def differences(before: Snapshot, now: Snapshot) -> list[str]:
    lines: list[str] = []
    was_sysctl, is_sysctl = before["sysctl"], now["sysctl"]
    for key in sorted(set(was_sysctl) | set(is_sysctl)):
        if was_sysctl.get(key) != is_sysctl.get(key):
            lines.append(f"sysctl {key}: {was_sysctl.get(key)!r} -> {is_sysctl.get(key)!r}")
    was_ipt, is_ipt = before["iptables"], now["iptables"]
    for table in sorted(set(was_ipt) | set(is_ipt)):
        old, new = set(was_ipt.get(table, [])), set(is_ipt.get(table, []))
        lines += [f"{table}: added {entry}" for entry in sorted(new - old)]
        lines += [f"{table}: removed {entry}" for entry in sorted(old - new)]
    for kind in LISTS:
        old_items, new_items = _items(before, kind), _items(now, kind)
        lines += [f"{kind}: added {item}" for item in sorted(new_items - old_items)]
        lines += [f"{kind}: removed {item}" for item in sorted(old_items - new_items)]
    return lines


BUILTIN_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


def _only_empty_builtins(entries: list[str]) -> bool:
    return all(
        e.startswith(":") and e[1:].split()[0] in BUILTIN_CHAINS and e.endswith(" ACCEPT")
        for e in entries
    )


def _quiet(*args: str) -> None:
    subprocess.run(args, capture_output=True, check=False)


def _restore_iptables(was: dict[str, list[str]]) -> None:
    for table, entries in iptables().items():
        family, name = table.split()
        old = set(was.get(table, []))
        for rule in entries:
            if rule.startswith("-A") and rule not in old:
                _quiet(family, "-t", name, "-D", *shlex.split(rule)[1:])
        new_chains = [c[1:].split()[0] for c in entries if c.startswith(":") and c not in old]
        for flag in ("-F", "-X"):  # flush all first: one new chain may jump to another
            for chain in new_chains:
                _quiet(family, "-t", name, flag, chain)
    for table, entries in iptables().items():
        if table not in was and _only_empty_builtins(entries) and shutil.which("nft"):
            # iptables-nft created this table; without nft it stays (empty, accepting everything).
            family, name = table.split()
            _quiet("nft", "delete", "table", "ip" if family == "iptables" else "ip6", name)


def restore(before: Snapshot) -> None:
    """Undo what was added since ``before``: mounts, links, iptables, cgroups, sysctls."""
    for point in sorted(set(mounts()) - set(before["mounts"]), key=len, reverse=True):
        _quiet("umount", "-l", point)
    for name in sorted(set(links()) - set(before["links"])):
        _quiet("ip", "link", "delete", name)
    _restore_iptables(before["iptables"])
    added = set(cgroups()) - set(before["cgroups"])
    for path in sorted(added, key=len, reverse=True):
        # Deeper cgroups (pods, containers) first; rmdir removes only empty, process-free cgroups.
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
    for key, value in sysctls().items():
        if key in before["sysctl"] and before["sysctl"][key] != value:
            _quiet("sysctl", "-qw", f"{key}={before['sysctl'][key]}")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("save", "diff", "restore"):
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[2])
    if argv[1] == "save":
        path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True))
        return 0
    before = json.loads(path.read_text())
    if argv[1] == "restore":
        restore(before)
    remaining = differences(before, snapshot())
    for line in remaining:
        print(line)
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
