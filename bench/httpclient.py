"""Compare HTTP clients probing 1,000 simulated Ollama nodes; print a Markdown table.

    .venv/bin/python bench/httpclient.py                  # 5 repetitions, ~3 min
    .venv/bin/python bench/httpclient.py --reps 9 --baseline aff72fc
    .venv/bin/python bench/httpclient.py --only aiohttp httpx
    .venv/bin/python bench/httpclient.py --loop uvloop     # rounds on uvloop

One fleet (`manage.py simulate_fleet --nodes 1000`, its own process, stopped by
PID, on 127.77.0.1 … so as not to meet bench/network.py's fleets) answers every
candidate. A round probes every node once as a probe cycle does: a fresh event
loop (`asyncio.run`), SOLLOL_PROBE_CONCURRENCY's default of 256 at once, GET
/api/version then /api/ps ("ps" rounds) or also /api/tags ("tags" rounds, one
cycle a minute in the dashboard). The candidates take turns round by round, so a
noisy neighbour costs them alike; each round's CPU is this process's
(utime + stime, all threads) over the round. "cores at 5 s" is that CPU spread
over the 5 s probe interval of bench/network.py's scale scenario: the probing
alone, without the writer that stores results.

Candidates (all read each body up to 4 MiB, parse it with network.probes):
- hand: the hand-written HTTP/1.1 reader, network/probes.py at --baseline
- aiohttp: network.probes.probe_node as it is now (core.httpclient: one aiohttp
  session per probe, closed after it)
- aiohttp-shared: one aiohttp session for the whole round
- httpx: one httpx.AsyncClient per probe (one connection), closed after it, all
  clients given one SSL context (without it each client reads certifi's bundle)
- httpx-shared: one httpx.AsyncClient for the whole round (the earlier trial)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from network import probes  # noqa: E402

BASE = "127.77.0.1"
NODES = 1000
CONCURRENCY = 256
TIMEOUT = 2.0
INTERVAL = 5.0  # bench/network.py's scale scenario
MAX_BODY = probes.MAX_BODY

Get = Callable[[str], Awaitable[tuple[int, bytes]]]
Prober = Callable[[str, bool], Awaitable[bool]]


# --- the fleet ------------------------------------------------------------------------


def start_fleet(workdir: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start `manage.py simulate_fleet`; return the process and the node URLs."""
    out = workdir / "fleet.out"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "simulate_fleet", "--nodes", str(NODES)]
        + ["--rpc", "0", "--base", BASE, "--no-control"],
        cwd=REPO,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    while time.monotonic() - started < 180:
        text = out.read_text(errors="replace")
        if "Ctrl-C to stop." in text:
            lines = text.split("Simulated Ollama nodes", 1)[1].splitlines()[1:]
            urls = []
            for line in lines:
                if not line.startswith("  "):
                    break
                urls.append(line.strip())
            return process, urls
        if process.poll() is not None:
            raise RuntimeError(f"simulate_fleet exited early:\n{text[-3000:]}")
        time.sleep(0.2)
    stop(process)
    raise RuntimeError("simulate_fleet did not start in time")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- candidates -----------------------------------------------------------------------


async def probe_with(get: Get, with_tags: bool) -> bool:
    """Do what probe_node does with the replies: the same GETs, the same parsing."""
    status, body = await get("/api/version")
    version = probes._json(body)
    if status != 200 or not isinstance(version, dict):
        return False
    status, body = await get("/api/ps")
    if status != 200:
        return False
    probes._models(body, probes.LOADED_FIELDS)
    if with_tags:
        status, body = await get("/api/tags")
        probes._models(body, probes.DISK_FIELDS)
    return True


async def _aiohttp_get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url, allow_redirects=False) as response:
        body = bytearray()
        while chunk := await response.content.readany():
            body += chunk
            if len(body) > MAX_BODY:
                raise ValueError("too large")
        return response.status, bytes(body)


async def _httpx_get(client: httpx.AsyncClient, url: str) -> tuple[int, bytes]:
    async with client.stream("GET", url) as response:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_BODY:
                raise ValueError("too large")
        return response.status_code, bytes(body)


def candidates(baseline: types.ModuleType | None) -> dict[str, Callable]:
    """Return, per candidate, a factory: () -> (setup, probe, teardown) per round."""

    def plain(probe_node: Callable) -> Callable:
        def round_():
            async def probe(url: str, with_tags: bool) -> bool:
                result = await probe_node(url, timeout=TIMEOUT, with_tags=with_tags)
                return result.ok

            return None, probe, None

        return round_

    def shared(open_client: Callable, get: Callable, close: Callable) -> Callable:
        """Return a candidate whose one client serves every node of a round."""

        def round_():
            state: dict = {}

            async def setup() -> None:
                state["client"] = open_client()

            async def probe(url: str, with_tags: bool) -> bool:
                client = state["client"]
                async with asyncio.timeout(TIMEOUT):
                    return await probe_with(
                        lambda path: get(client, url + path), with_tags
                    )

            async def teardown() -> None:
                await close(state["client"])

            return setup, probe, teardown

        return round_

    aiohttp_shared = shared(
        lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=1),
            headers={"User-Agent": "bench", "Accept": "application/json"},
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
        ),
        _aiohttp_get,
        lambda session: session.close(),
    )

    # httpx builds an SSL context (certifi's bundle read, ~10 ms) for every client
    # unless given one: one for the process, as its documentation advises.
    context = ssl.create_default_context()

    def httpx_per_node():
        async def probe(url: str, with_tags: bool) -> bool:
            async with (
                asyncio.timeout(TIMEOUT),
                httpx.AsyncClient(
                    base_url=url,
                    limits=httpx.Limits(max_connections=1),
                    headers={"Accept": "application/json"},
                    timeout=None,
                    trust_env=False,
                    verify=context,
                ) as client,
            ):
                return await probe_with(
                    lambda path: _httpx_get(client, path), with_tags
                )

        return None, probe, None

    httpx_shared = shared(
        lambda: httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
            ),
            headers={"Accept": "application/json"},
            timeout=None,
            trust_env=False,
            verify=context,
        ),
        _httpx_get,
        lambda client: client.aclose(),
    )

    found = {
        "aiohttp": plain(probes.probe_node),
        "aiohttp-shared": aiohttp_shared,
        "httpx": httpx_per_node,
        "httpx-shared": httpx_shared,
    }
    if baseline is not None:
        found = {"hand": plain(baseline.probe_node), **found}
    return found


def load_baseline(rev: str) -> types.ModuleType:
    """Import network/probes.py as it was at rev (the hand-written reader)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:network/probes.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # The modules it imported moved to core/ since (docs/ARCHITECTURE.md).
    source = source.replace("from sollol_site import jsonio", "from core import jsonio")
    source = source.replace("from sollol_site.jsonio import", "from core.jsonio import")
    spec = importlib.util.spec_from_loader("probes_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:network/probes.py", "exec"), module.__dict__)
    return module


# --- rounds ---------------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_round(factory: Callable, urls: list[str], with_tags: bool) -> int:
    setup, probe, teardown = factory()
    if setup is not None:
        await setup()
    limit = asyncio.Semaphore(CONCURRENCY)

    async def bounded(url: str) -> bool:
        async with limit:
            try:
                return await probe(url, with_tags)
            except Exception:
                return False

    try:
        results = await asyncio.gather(*(bounded(url) for url in urls))
    finally:
        if teardown is not None:
            await teardown()
    return sum(results)


def measure(
    factory: Callable, urls: list[str], with_tags: bool, loop: str = "asyncio"
) -> dict:
    cpu, wall = cpu_seconds(), time.perf_counter()
    loop_factory = None
    if loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        ok = runner.run(one_round(factory, urls, with_tags))
    return {
        "cpu": cpu_seconds() - cpu,
        "wall": time.perf_counter() - wall,
        "ok": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="rounds per candidate")
    parser.add_argument(
        "--baseline",
        default="aff72fc",
        help="git revision whose network/probes.py is the hand reader ('' for none)",
    )
    parser.add_argument("--only", nargs="+", help="candidates to run")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop of each round (network/cycle.py runs asyncio's)",
    )
    args = parser.parse_args()

    # httpx logs every request at INFO: in the earlier trial that line cost as
    # much as the request; a dashboard using httpx would silence it, so does this.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    baseline = load_baseline(args.baseline) if args.baseline else None
    chosen = candidates(baseline)
    if args.only:
        chosen = {name: chosen[name] for name in args.only}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-httpclient-") as tmp:
        fleet, urls = start_fleet(Path(tmp))
        try:
            print(f"fleet pid {fleet.pid}: {len(urls)} nodes", file=sys.stderr)
            for factory in chosen.values():  # warm-up: imports, first connections
                measure(factory, urls, True, args.loop)
            rows: dict[tuple[str, str], list[dict]] = {}
            for rep in range(args.reps):
                for kind, with_tags in (("ps", False), ("tags", True)):
                    for name, factory in chosen.items():
                        result = measure(factory, urls, with_tags, args.loop)
                        rows.setdefault((name, kind), []).append(result)
                        print(
                            f"rep {rep + 1} {kind:4} {name:15} "
                            f"cpu {result['cpu']:.3f} s wall {result['wall']:.2f} s "
                            f"ok {result['ok']}",
                            file=sys.stderr,
                        )
        finally:
            stop(fleet)
    print(render(rows, chosen, args, load_start))


def render(rows: dict, chosen: dict, args: argparse.Namespace, load_start) -> str:
    baseline = args.baseline or "''"
    lines = [
        f"`.venv/bin/python bench/httpclient.py --reps {args.reps} --baseline "
        f"{baseline}`"
        + (f" `--only {' '.join(args.only)}`" if args.only else "")
        + (f" `--loop {args.loop}`" if args.loop != "asyncio" else "")
        + f"; load {' '.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at end; "
        f"aiohttp {aiohttp.__version__}, httpx {httpx.__version__}, "
        f"Python {sys.version.split()[0]}.",
        "",
        "| candidate | rounds | CPU s per round of 1,000 (median, ps) | min–max"
        " | µs per probe | cores at 5 s | wall s | CPU s, tags rounds (median)"
        " | all ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = None
    for name in chosen:
        ps, tags = rows[(name, "ps")], rows[(name, "tags")]
        cpu = statistics.median(r["cpu"] for r in ps)
        base = base or cpu
        ok = all(r["ok"] == NODES for r in ps + tags)
        lines.append(
            f"| {name} | {len(ps)} | {cpu:.3f} ({cpu / base:.2f}×) | "
            f"{min(r['cpu'] for r in ps):.3f}–{max(r['cpu'] for r in ps):.3f} | "
            f"{cpu / NODES * 1e6:.0f} | {cpu / INTERVAL:.3f} | "
            f"{statistics.median(r['wall'] for r in ps):.2f} | "
            f"{statistics.median(r['cpu'] for r in tags):.3f} | "
            f"{'yes' if ok else '**no**'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
