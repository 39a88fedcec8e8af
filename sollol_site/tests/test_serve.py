from __future__ import annotations

from django.test import override_settings

from sollol_site.management.commands.serve import allowed_hosts_for

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
