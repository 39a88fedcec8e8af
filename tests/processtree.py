"""The processes a test started, and whether any of them outlived their parent.

Read from /proc (Linux), so that a test can tell what a dashboard process spawned
(Dask workers, Ray's GCS and raylet...) without psutil. A process is named by its
pid and start time together, as a pid alone may be reused by the time we look.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

Process = tuple[int, int]  # pid, start time in clock ticks since boot


def _stat(pid: int) -> tuple[int, int, str] | None:
    """Return (parent pid, start time, state) of pid, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(root: int) -> set[Process]:
    """Return every living process below root (children, their children...)."""
    parents: dict[int, int] = {}
    started: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)], started[int(entry)] = stat[0], stat[1]
    found: set[Process] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and (pid, started[pid]) not in found:
                found.add((pid, started[pid]))
                frontier.append(pid)
    return found


def still_running(processes: set[Process]) -> set[Process]:
    """Return those of processes that still run (zombies count as gone)."""
    running = set()
    for pid, start in processes:
        stat = _stat(pid)
        if stat is not None and stat[1] == start and stat[2] != "Z":
            running.add((pid, start))
    return running


def command_line(pid: int) -> str:
    """Return pid's command line, for a failure message."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
    """Return the (address, port) every TCP listening socket of pids is bound to.

    IPv4-mapped IPv6 addresses are given as the IPv4 address they map.
    """
    inodes: set[str] = set()
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            found.add((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    # /proc/net/tcp* print each 32-bit word of the address in host (little) order.
    raw = b"".join(
        bytes.fromhex(hex_address[i : i + 8])[::-1]
        for i in range(0, len(hex_address), 8)
    )
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)
