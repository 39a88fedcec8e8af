"""The page shows a llama.cpp server as what it is, with its slots and GPU, live."""

from __future__ import annotations

import threading

import pytest
import requests
from playwright.sync_api import expect

from simulator.servers import SimulatedGpuExporter, SimulatedServer, running_servers
from tests.browser.test_dashboard_page import (
    FAST_PROBING,
    all_healthy,
    node_row,
    open_live,
)
from tests.liveserver import wait_for

pytestmark = pytest.mark.live
GIB = 2**30


def test_a_llama_servers_slots_show_on_its_row_as_they_fill(
    live_server_factory, watched_page
):
    llama = SimulatedServer("llamacpp", "127.0.0.96", slots=1, generation_seconds=2)
    exporter = SimulatedGpuExporter(
        "nvidia_smi", "127.0.0.97", gpus=[("NVIDIA GeForce RTX 4090", 24 * GIB, GIB)]
    )
    with running_servers(llama, exporter):
        server = live_server_factory(
            SOLLOL_NODES=f"llamacpp+{llama.url}",
            SOLLOL_GPU_EXPORTERS=f"{llama.address}={exporter.url}",
            **FAST_PROBING,
        )
        server.start()
        wait_for(lambda: all_healthy(server, 1))
        page = open_live(watched_page(), server)
        row = node_row(page, llama.url)
        expect(row.locator("td").nth(0)).to_have_text(f"{llama.url} (llama.cpp)")
        load = row.locator("td").nth(3)
        expect(load).to_have_text("slots 0/1")
        chat = {"model": "tiny-llama", "messages": []}
        askers = [
            threading.Thread(
                target=requests.post,
                args=(llama.url + "/v1/chat/completions",),
                kwargs={"json": chat, "timeout": 10},
            )
            for _ in range(2)
        ]
        for asker in askers:
            asker.start()
        # One runs, one waits on the server itself; probes every second say so.
        expect(load).to_have_text("slots 1/1 · 1 queued on the server", timeout=3000)
        for asker in askers:
            asker.join(15)
        expect(load).to_contain_text("slots 0/1", timeout=4000)
        expect(row.locator("td").nth(4)).to_have_text("b7310-0c1e57098")
        # The VRAM bar is the GPU's own, as its exporter says, and follows it.
        vram = row.locator("td").nth(6)
        expect(vram).to_have_text("1.0 GB of 24.0 GB")
        exporter.set_used(0, 18 * GIB)
        expect(vram).to_have_text("18.0 GB of 24.0 GB", timeout=3000)
