"""Notifications sent to real receivers on loopback, in each service's format.

Receivers are small HTTP servers on 127.0.0.1 that record what they were sent and
answer as told (200, 500, or not at all); e-mail goes to a real SMTP server
(aiosmtpd) on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from aiosmtpd.controller import Controller
from django.test import override_settings
from django.utils import timezone

from alerts import delivery
from alerts.choices import ChannelKind, DeliveryState
from alerts.models import Channel, Delivery
from alerts.tests.receivers import Mailbox, Receiver
from tests.liveserver import free_port

pytestmark = pytest.mark.django_db(transaction=True)

PAYLOAD = {
    "status": "firing",
    "alerts": [
        {
            "rule": "node_down",
            "subject": "127.0.0.2:11434",
            "severity": "critical",
            "started_at": "2026-12-03T12:00:10Z",
            "ended_at": None,
            "value": 1.0,
            "message": "node 127.0.0.2:11434 is down (offline)",
        }
    ],
    "message": "[FIRING] Node down (critical): 127.0.0.2:11434",
}


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answers=None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for each in made:
        each.close()


def queue(channel: Channel, payload: dict = PAYLOAD) -> Delivery:
    now = timezone.now()
    return Delivery.objects.create(
        channel=channel,
        status=payload["status"],
        rule="node_down",
        payload=payload,
        next_attempt_at=now,
        created=now,
    )


def settle(delivery_id: int, *states: str, timeout: float = 10.0) -> Delivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Delivery.objects.get(id=delivery_id)
        if row.state in states:
            return row
        time.sleep(0.02)
    raise AssertionError(f"delivery {delivery_id} is still {row.state}")


def test_the_generic_webhook_gets_the_notification_signed(receiver):
    hook = receiver()
    channel = Channel.objects.create(
        name="hook", kind=ChannelKind.WEBHOOK, url=hook.url + "/in", secret="s3cret"
    )
    sent = queue(channel)
    assert delivery.deliver_due() == 1
    assert settle(sent.id, DeliveryState.SENT).attempts == 1
    [(path, headers, body)] = hook.received
    assert path == "/in" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == PAYLOAD
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-SOLLOL-Signature"] == f"sha256={expected}"


def test_a_failing_receiver_is_tried_again_later_and_the_channel_says_so(receiver):
    hook = receiver(answers=[500, 200])
    channel = Channel.objects.create(
        name="hook", kind=ChannelKind.WEBHOOK, url=hook.url
    )
    sent = queue(channel)
    delivery.deliver_due()
    failed = settle(sent.id, DeliveryState.QUEUED)
    assert failed.attempts == 1 and "answered 500" in failed.last_error
    wait = (failed.next_attempt_at - timezone.now()).total_seconds()
    assert 1.0 < wait <= 2.0  # backoff: 2 s after the first failure
    assert Channel.objects.get().failing_since is not None
    assert delivery.deliver_due() == 0  # not due yet
    delivery.deliver_due(failed.next_attempt_at)
    done = settle(sent.id, DeliveryState.SENT)
    assert done.attempts == 2 and len(hook.received) == 2
    assert Channel.objects.get().failing_since is None


@override_settings(SOLLOL_ALERT_SEND_TIMEOUT=1.0)
def test_a_receiver_that_hangs_holds_up_no_other_channel(receiver):
    stuck, fine = receiver(answers=[None]), receiver()
    hung = queue(Channel.objects.create(name="a", kind="webhook", url=stuck.url))
    other = queue(Channel.objects.create(name="b", kind="webhook", url=fine.url))
    started = time.monotonic()
    delivery.deliver_due()
    settle(other.id, DeliveryState.SENT)
    assert time.monotonic() - started < 0.9  # before the hung one's timeout
    late = settle(hung.id, DeliveryState.QUEUED)
    assert "no answer within 1 s" in late.last_error


@override_settings(SOLLOL_ALERT_SEND_ATTEMPTS=2)
def test_a_delivery_that_keeps_failing_is_given_up_and_kept(receiver):
    hook = receiver(answers=[503, 503])
    sent = queue(Channel.objects.create(name="hook", kind="webhook", url=hook.url))
    delivery.deliver_due()
    first = settle(sent.id, DeliveryState.QUEUED)
    delivery.deliver_due(first.next_attempt_at)
    given_up = settle(sent.id, DeliveryState.FAILED)
    assert given_up.attempts == 2 and "503" in given_up.last_error


def test_slack_discord_ntfy_and_alertmanager_get_their_own_formats(receiver):
    hook = receiver()
    kinds = {
        ChannelKind.SLACK: "/slack",
        ChannelKind.DISCORD: "/discord",
        ChannelKind.NTFY: "/sollol-alerts",
        ChannelKind.ALERTMANAGER: "/am",
    }
    ids = [
        queue(Channel.objects.create(name=kind, kind=kind, url=hook.url + path)).id
        for kind, path in kinds.items()
    ]
    delivery.deliver_due()
    for each in ids:
        settle(each, DeliveryState.SENT)
    got = {path: (headers, body) for path, headers, body in hook.received}
    text = got["/slack"][1].decode()
    assert json.loads(text)["text"].startswith("[FIRING] Node down")
    assert "127.0.0.2:11434: node 127.0.0.2:11434 is down" in json.loads(text)["text"]
    assert json.loads(got["/discord"][1])["content"].startswith("[FIRING] Node down")
    headers, body = got["/sollol-alerts"]
    assert headers["Title"].startswith("[FIRING]") and headers["Priority"] == "5"
    assert headers["Tags"] == "rotating_light" and b"127.0.0.2:11434" in body
    [alert] = json.loads(got["/am/api/v2/alerts"][1])
    assert alert == {
        "labels": {
            "alertname": "node_down",
            "subject": "127.0.0.2:11434",
            "severity": "critical",
            "service": "sollol",
        },
        "annotations": {"summary": "node 127.0.0.2:11434 is down (offline)"},
        "startsAt": "2026-12-03T12:00:10Z",
    }


def test_e_mail_goes_through_a_real_smtp_server():
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        channel = Channel.objects.create(
            name="mail",
            kind=ChannelKind.EMAIL,
            url=f"smtp://127.0.0.1:{smtp.port}",
            recipients="ops@example.org, oncall@example.org",
        )
        sent = queue(channel)
        delivery.deliver_due()
        settle(sent.id, DeliveryState.SENT)
    finally:
        smtp.stop()
    [(to, message)] = mailbox.messages
    assert to == ["ops@example.org", "oncall@example.org"]
    assert message["Subject"] == PAYLOAD["message"]
    assert "127.0.0.2:11434: node 127.0.0.2:11434 is down" in message.get_payload()


def test_a_channel_has_at_most_two_in_flight_counted_in_the_database(receiver):
    """The cap holds for every process: what another process is sending (a claim
    stored with a live lease) counts as this one's would."""
    hook = receiver()
    channel = Channel.objects.create(
        name="hook", kind=ChannelKind.WEBHOOK, url=hook.url
    )
    other = queue(channel)
    Delivery.objects.filter(id=other.id).update(
        state=DeliveryState.SENDING,
        lease_until=timezone.now() + delivery.LEASE,  # held by another process
    )
    waiting = [queue(channel) for _ in range(3)]
    assert delivery.deliver_due() == 1  # one more may go; two must wait
    settle(waiting[0].id, DeliveryState.SENT)
    # Each sent frees a place, and the channel's next goes at once.
    for each in waiting[1:]:
        settle(each.id, DeliveryState.SENT)
    assert Delivery.objects.get(id=other.id).state == DeliveryState.SENDING
    assert len(hook.received) == 3


def test_a_sender_whose_lease_was_taken_over_sends_nothing(receiver):
    hook = receiver()
    channel = Channel.objects.create(
        name="hook", kind=ChannelKind.WEBHOOK, url=hook.url
    )
    row = queue(channel)
    stale = timezone.now() - delivery.LEASE  # a claim that ran out
    Delivery.objects.filter(id=row.id).update(
        state=DeliveryState.SENDING, lease_until=stale
    )
    assert delivery.deliver_due() == 1  # claimed again, with a new lease
    settle(row.id, DeliveryState.SENT)
    delivery.send_claimed(row.id, stale, as_tasks=False)  # the old sender wakes
    assert len(hook.received) == 1
    assert Delivery.objects.get(id=row.id).attempts == 1


def test_alertmanager_gets_the_subjects_labels_under_its_own():
    labelled = {**PAYLOAD["alerts"][0], "labels": {"rack": "a1", "severity": "low"}}
    [alert] = delivery.alertmanager_alerts({**PAYLOAD, "alerts": [labelled]})
    assert alert["labels"] == {
        "rack": "a1",
        "alertname": "node_down",
        "subject": "127.0.0.2:11434",
        "severity": "critical",  # the rule's, not a label of the same name
        "service": "sollol",
    }
