"""`manage.py simulate_fleet`: simulated Ollama nodes (and RPC backends) on loopback.

For demos, benchmarks and live tests: the dashboard watches these as it would a LAN
of Ollama machines, and a JSON control server makes nodes die, hang, slow down or
load models on request (see ``simulator.ollama``). ``--token-rate`` and friends make
every node generate in time, as a real one does (``SimulatedNode.set_generation``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.ollama import (
    DEFAULT_PORT,
    DEFAULT_VERSION,
    GIB,
    Fleet,
    new_event_loop,
)

RPC_PORT = 50052  # ggml-rpc-server's default


def rpc_devices(index: int, seed: int) -> list[tuple[int, int]]:
    """Return plausible (free, total) device memory for RPC backend ``index``."""
    chooser = random.Random(f"rpc:{seed}:{index}")
    total = chooser.choice((8, 12, 16, 24)) * GIB
    devices = [(int(total * chooser.uniform(0.55, 0.95)), total)]
    if chooser.random() < 0.25:  # some boxes have two cards
        devices.append((int(total * chooser.uniform(0.55, 0.95)), total))
    return devices


class Command(BaseCommand):
    help = (
        "Run simulated Ollama nodes (and llama.cpp RPC backends) on loopback until "
        "Ctrl-C or SIGTERM, with a JSON control server for faults and models."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--nodes", type=int, default=3, help="Ollama nodes")
        parser.add_argument("--rpc", type=int, default=0, help="RPC backends")
        parser.add_argument(
            "--base", default="127.0.0.2", help="first loopback address"
        )
        parser.add_argument(
            "--port",
            type=int,
            default=DEFAULT_PORT,
            help="node port (0: a free port for each node)",
        )
        parser.add_argument(
            "--layout",
            choices=("hosts", "ports"),
            default="hosts",
            help="hosts: one address per node; ports: one address, consecutive ports",
        )
        parser.add_argument("--rpc-port", type=int, default=RPC_PORT)
        parser.add_argument(
            "--rpc-protocol",
            dest="rpc_protocols",
            action="append",
            help='RPC protocol, e.g. 3.0.0 or "legacy" (repeat to mix; default: the '
            "simulator's)",
        )
        parser.add_argument(
            "--control-port",
            type=int,
            default=11500,
            help="control server port on 127.0.0.1 (0: any free port)",
        )
        parser.add_argument(
            "--no-control", action="store_true", help="run no control server"
        )
        parser.add_argument("--seed", type=int, default=0, help="varies the models")
        parser.add_argument(
            "--ollama-version",
            dest="versions",
            action="append",
            help=f"Ollama version to report (repeat to mix; default {DEFAULT_VERSION})",
        )
        generation = parser.add_argument_group(
            "generation", "how every node generates (default: whole replies at once)"
        )
        generation.add_argument(
            "--token-rate", type=float, default=0.0, help="tokens a second (0: at once)"
        )
        generation.add_argument(
            "--first-token", type=float, default=0.0, help="seconds to the first token"
        )
        generation.add_argument(
            "--load-seconds",
            type=float,
            default=0.0,
            help="more seconds before it when the model was not loaded",
        )
        generation.add_argument(
            "--num-parallel", type=int, default=1, help="requests generating at once"
        )
        generation.add_argument(
            "--max-queue",
            type=int,
            default=512,
            help='requests waiting for a slot; more get 503 "server busy"',
        )
        parser.add_argument(
            "--loop",
            choices=("uvloop", "asyncio"),
            default="uvloop",
            help="event loop (uvloop when installed: cheaper at 1,000 nodes)",
        )
        parser.add_argument(
            "--duration",
            type=float,
            default=None,
            help="stop after this many seconds (default: run until stopped)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["nodes"] < 0 or options["rpc"] < 0:
            raise CommandError("--nodes and --rpc cannot be negative")
        try:
            if not ipaddress.ip_address(options["base"]).is_loopback:
                raise CommandError("--base must be a loopback address (127.0.0.0/8)")
        except ValueError as exc:
            raise CommandError(f"--base: {exc}") from exc
        rpc_class = self._rpc_class() if options["rpc"] else None
        factory = new_event_loop if options["loop"] == "uvloop" else None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self._run(options, rpc_class))

    @staticmethod
    def _rpc_class() -> Any:
        try:
            from simulator.rpc import SimulatedRpcServer
        except ImportError as exc:
            raise CommandError(
                "--rpc needs simulator/rpc.py (SimulatedRpcServer), which is "
                f"not available: {exc}"
            ) from exc
        return SimulatedRpcServer

    async def _run(self, options: dict[str, Any], rpc_class: Any) -> None:
        fleet = Fleet(
            options["nodes"],
            base=options["base"],
            port=options["port"],
            layout=options["layout"],
            seed=options["seed"],
            versions=options["versions"] or (DEFAULT_VERSION,),
            control_port=None if options["no_control"] else options["control_port"],
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stopping.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (call_command in a test): --duration ends it
        rpc_servers: list[Any] = []
        try:
            try:
                await fleet.start()
            except OSError as exc:
                raise CommandError(f"cannot listen: {exc}") from exc
            try:
                for node in fleet.nodes:
                    node.set_generation(
                        token_rate=options["token_rate"],
                        first_token=options["first_token"],
                        load_seconds=options["load_seconds"],
                        num_parallel=options["num_parallel"],
                        max_queue=options["max_queue"],
                    )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            rpc_servers = await self._start_rpc(rpc_class, options)
            fleet.rpc_servers = rpc_servers  # the control server drives them too
            self._announce(fleet, rpc_servers)
            if options["duration"] is None:
                await stopping.wait()
            else:
                with_timeout = asyncio.wait_for(stopping.wait(), options["duration"])
                try:
                    await with_timeout
                except TimeoutError:
                    pass
        finally:
            for server in rpc_servers:
                await server.stop()
            await fleet.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # never installed
        self.stdout.write("Stopped.")

    async def _start_rpc(self, rpc_class: Any, options: dict[str, Any]) -> list[Any]:
        servers: list[Any] = []
        first = ipaddress.ip_address(options["base"])
        for index in range(options["rpc"]):
            # The same machines as the Ollama nodes, as rpc-server usually runs
            # next to Ollama; with --layout ports, consecutive ports instead.
            if options["layout"] == "hosts":
                host, port = str(first + index), options["rpc_port"]
            else:
                host, port = options["base"], options["rpc_port"] + index
            devices = rpc_devices(index, options["seed"])
            protocols = options["rpc_protocols"]
            kwargs: dict[str, Any] = {}
            if protocols:
                protocol = protocols[index % len(protocols)]
                kwargs["protocol"] = protocol
                if protocol == "legacy" or int(protocol.split(".")[0]) < 3:
                    devices = devices[:1]  # one device per server before protocol 3
            try:
                server = rpc_class(host, port, devices=devices, **kwargs)
            except ValueError as exc:
                raise CommandError(f"--rpc-protocol: {exc}") from exc
            try:
                await server.start()
            except OSError as exc:
                for started in servers:
                    await started.stop()
                raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
            servers.append(server)
        return servers

    def _announce(self, fleet: Fleet, rpc_servers: list[Any]) -> None:
        lines = [f"Simulated Ollama nodes ({len(fleet)}):"]
        lines += [f"  {url}" for url in fleet.urls]
        if rpc_servers:
            lines.append(f"Simulated RPC backends ({len(rpc_servers)}):")
            for server in rpc_servers:
                host = getattr(server, "host", "?")
                port = getattr(server, "port", "?")
                lines.append(f"  {host}:{port}")
        if fleet.control_url:
            lines.append(
                f"Control: {fleet.control_url}  (GET /nodes; POST /nodes/<i|all>/"
                "die|revive|hang|unhang|slow|error|queue_full|reset|cut|generation|heal|"
                "load|unload|process|pull|delete)"
            )
            if rpc_servers:
                lines.append(
                    f"         {fleet.control_url}/rpc  (POST /rpc/<i|all>/"
                    "die|revive|attach|detach)"
                )
        lines.append("Ctrl-C to stop.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()
