from __future__ import annotations

import pytest

from core.addresses import backend_address, node_url
from core.jsonio import PayloadError


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.2", "http://127.0.0.2:11434"),
        ("127.0.0.2:11434", "http://127.0.0.2:11434"),
        ("http://127.0.0.2:11434/", "http://127.0.0.2:11434"),
        ("HTTP://LocalHost:8000", "http://localhost:8000"),
        ("https://gpu-box.lan", "https://gpu-box.lan:11434"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("  127.0.0.3  ", "http://127.0.0.3:11434"),
    ],
)
def test_it_writes_one_node_one_way(given, url):
    assert node_url(given)[0] == url


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   ",
        "http://h/api",
        "user:pw@h",
        "h:99999",
        "h_h",
        "ftp://h",
        "h?x=1",
        "h:0",
    ],
)
def test_it_refuses_what_is_not_a_node_address(given):
    with pytest.raises(PayloadError):
        node_url(given)


def test_it_writes_backends_as_host_and_port():
    assert backend_address("127.0.0.2") == ("127.0.0.2:50052", "127.0.0.2", 50052)
    assert backend_address("127.0.0.2:50053")[0] == "127.0.0.2:50053"
    with pytest.raises(PayloadError):
        backend_address("http://127.0.0.2:50052")
