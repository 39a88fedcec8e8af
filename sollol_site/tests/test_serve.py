from __future__ import annotations

from django.test import override_settings

from sollol_site.management.commands.serve import allowed_hosts_for, open_door_warning

LOOPBACK = ["localhost", "127.0.0.1", "[::1]"]


@override_settings(ALLOWED_HOSTS=LOOPBACK, ALLOWED_HOSTS_FROM_ENV=False)
def test_it_answers_to_any_name_when_serving_every_interface():
    assert allowed_hosts_for("0.0.0.0") == ["*"]
    assert allowed_hosts_for("::") == ["*"]


@override_settings(ALLOWED_HOSTS=LOOPBACK, ALLOWED_HOSTS_FROM_ENV=False)
def test_it_adds_the_address_it_serves_on():
    assert allowed_hosts_for("127.0.0.5") == [*LOOPBACK, "127.0.0.5"]
    assert allowed_hosts_for("127.0.0.1") == LOOPBACK


@override_settings(ALLOWED_HOSTS=["dash.lan"], ALLOWED_HOSTS_FROM_ENV=True)
def test_it_keeps_what_the_operator_configured():
    assert allowed_hosts_for("0.0.0.0") == ["dash.lan"]


@override_settings(SOLLOL_API_TOKENS=[])
def test_it_warns_loudly_when_it_serves_beyond_loopback_with_writes_open():
    warning = open_door_warning("0.0.0.0")
    assert warning.startswith("WARNING") and "SOLLOL_API_TOKEN" in warning
    assert open_door_warning("192.0.2.7") is not None
    assert open_door_warning("127.0.0.1") is None
    assert open_door_warning("localhost") is None
    with override_settings(SOLLOL_API_TOKENS=["t"]):
        assert open_door_warning("0.0.0.0") is None
