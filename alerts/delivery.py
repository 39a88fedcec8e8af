"""Sending notifications: the alerts app's one I/O boundary.

Deliveries (alerts.services queues them) are claimed one by one with a
conditional UPDATE, so of several processes exactly one sends each; the claim is
a lease, and a sender that died mid-send leaves its delivery to be sent again
when the lease runs out (a sender that finds its lease taken over sends nothing).
At most two deliveries are in flight to one channel, across every process (the
claim counts them under a lock of the channel's row), and each attempt is bounded
by SOLLOL_ALERT_SEND_TIMEOUT: a channel that hangs or fails holds up only itself.

Where each is sent: in a Celery worker (production: the evaluation and delivery
rounds run there) every claimed delivery is a task of its own,
`alerts.tasks.send_delivery`, so the worker's processes share them; elsewhere
(the embedded scheduler of `serve`, the API's "send a test") in a thread of a
small pool in this process. A failed attempt goes back to the outbox and is tried
again after 2, 4, 8 ... seconds (at most five minutes apart) by the next delivery
round, SOLLOL_ALERT_SEND_ATTEMPTS times in all; every attempt's outcome stays on
the delivery (the delivery log), and a channel that keeps failing says since when.

Formats: the generic webhook gets the notification as it is (README: Alerting),
signed with HMAC-SHA256 of the body in `X-SOLLOL-Signature: sha256=<hex>` when the
channel has a secret; Slack `{"text"}`, Discord `{"content"}`, ntfy a plain-text
body with Title, Priority and Tags headers, Alertmanager its API v2 alert list,
e-mail a plain-text message through Django's SMTP backend (SOLLOL_SMTP_URL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import smtplib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.choices import ChannelKind, DeliveryState, Source
from alerts.models import Channel, Delivery
from core.allowlist import Refused, check_address

logger = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=2)
# A task still queued this close to its lease's end is dropped (the round claims
# the delivery again): never two senders for one delivery.
LEASE_MARGIN = dt.timedelta(seconds=15)
PER_CHANNEL = 2  # deliveries in flight to one channel at once
MAX_BACKOFF = 300.0
USER_AGENT = "sollol-dashboard-alerts"

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="alert-send")
_claiming = threading.Lock()  # this process's claims one at a time (SQLite's too)


class SendError(Exception):
    """The channel did not take the notification; the message says why."""


def _due(now: dt.datetime) -> Q:
    return Q(state=DeliveryState.QUEUED, next_attempt_at__lte=now) | Q(
        state=DeliveryState.SENDING, lease_until__lt=now
    )


def deliver_due(
    now: dt.datetime | None = None,
    *,
    channel: int | None = None,
    as_tasks: bool = False,
) -> int:
    """Claim the deliveries due now and hand them to the senders; return how many.

    `as_tasks`: each as a Celery task of its own (the caller runs in a worker);
    otherwise in this process's sender threads.
    """
    now = now or timezone.now()
    due = Delivery.objects.filter(_due(now)).order_by("next_attempt_at", "id")
    if channel is not None:
        due = due.filter(channel_id=channel)
    started = 0
    full: set[int] = set()
    for delivery_id, channel_id in due.values_list("id", "channel_id")[:200]:
        if channel_id in full:
            continue
        lease = _claim(delivery_id, channel_id, now)
        if lease is FULL:
            full.add(channel_id)  # PER_CHANNEL in flight already: its turn comes
            continue
        if lease is None:
            continue  # another process took it
        if as_tasks:
            from alerts.tasks import send_delivery

            send_delivery.apply_async(
                (delivery_id, lease.isoformat()),
                expires=(LEASE - LEASE_MARGIN).total_seconds(),
            )
        else:
            _pool.submit(_send_one, delivery_id, lease)
        started += 1
    return started


FULL = object()  # _claim: the channel has as many in flight as it may


def _claim(delivery_id: int, channel_id: int, now: dt.datetime) -> Any:
    """Take one delivery for sending unless its channel has PER_CHANNEL in flight;
    return the lease (it names this claim), FULL, or None when another took it."""
    lease = now + LEASE
    with _claiming, transaction.atomic():
        # The channel's row lock orders claims for one channel across processes.
        list(Channel.objects.select_for_update().filter(id=channel_id).values("id"))
        in_flight = Delivery.objects.filter(
            channel_id=channel_id, state=DeliveryState.SENDING, lease_until__gte=now
        ).count()
        if in_flight >= PER_CHANNEL:
            return FULL
        claimed = (
            Delivery.objects.filter(id=delivery_id)
            .filter(_due(now))
            .update(state=DeliveryState.SENDING, lease_until=lease)
        )
    return lease if claimed else None


def send_claimed(delivery_id: int, lease: dt.datetime, *, as_tasks: bool) -> None:
    """Send a delivery this sender claimed, record how it went, then take the
    channel's next one at once (no waiting for the next round)."""
    channel_id = None
    try:
        delivery = (
            Delivery.objects.select_related("channel")
            .filter(id=delivery_id, state=DeliveryState.SENDING, lease_until=lease)
            .first()
        )
        if delivery is None:
            return  # its lease ran out and another sender took it: not twice
        channel_id = delivery.channel_id
        error = ""
        try:
            send(delivery.channel, delivery.payload)
        except SendError as exc:
            error = str(exc)[:1000]
        except Exception as exc:  # a bug in a format: kept, not lost in a thread
            logger.exception("alert delivery %s failed", delivery_id)
            error = f"{type(exc).__name__}: {exc}"[:1000]
        _record(delivery, error)
    finally:
        try:
            if channel_id is not None:
                deliver_due(channel=channel_id, as_tasks=as_tasks)
        finally:
            if not as_tasks:
                close_old_connections()


def _send_one(delivery_id: int, lease: dt.datetime) -> None:
    send_claimed(delivery_id, lease, as_tasks=False)


def _record(delivery: Delivery, error: str) -> None:
    now = timezone.now()
    delivery.attempts += 1
    channel = delivery.channel
    if not error:
        delivery.state, delivery.sent_at, delivery.last_error = (
            DeliveryState.SENT,
            now,
            "",
        )
        Channel.objects.filter(id=channel.id).update(failing_since=None, last_error="")
    else:
        delivery.last_error = error
        if delivery.attempts >= settings.SOLLOL_ALERT_SEND_ATTEMPTS:
            delivery.state = DeliveryState.FAILED
        else:
            delivery.state = DeliveryState.QUEUED
            backoff = min(MAX_BACKOFF, 2.0**delivery.attempts)
            delivery.next_attempt_at = now + dt.timedelta(seconds=backoff)
        Channel.objects.filter(id=channel.id, failing_since__isnull=True).update(
            failing_since=now
        )
        Channel.objects.filter(id=channel.id).update(last_error=error)
        logger.warning("alert channel %s: %s", channel.name, error)
    delivery.lease_until = None
    delivery.save(
        update_fields=[
            "attempts", "state", "sent_at", "last_error", "next_attempt_at",
            "lease_until",
        ]
    )  # fmt: skip


# --- formats ---------------------------------------------------------------------


def text_of(payload: dict) -> str:
    """The notification in lines of text (chat, ntfy, e-mail)."""
    lines = [payload["message"]]
    for alert in payload.get("alerts", ())[:50]:
        since = alert["started_at"] or ""
        lines.append(
            f"- {alert['subject']}: {alert['message'] or alert['rule']} (since {since})"
        )
    return "\n".join(lines)


def check_destination(channel: Channel, url: str) -> None:
    """A channel made through the API goes only where nodes may be (core.allowlist):
    every address its host resolves to, checked at each send."""
    if channel.source != Source.API or not url:
        return  # the operator's own (environment, file): trusted
    parts = urlsplit(url)
    try:
        answers = socket.getaddrinfo(
            parts.hostname, parts.port or 0, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise SendError(f"cannot resolve {parts.hostname}: {exc}") from None
    for answer in answers:
        try:
            check_address(answer[4][0])
        except Refused as refusal:
            raise SendError(f"{parts.hostname}: {refusal}") from None


def send(channel: Channel, payload: dict) -> None:
    """Send one notification to one channel; raise SendError."""
    kind = channel.kind
    check_destination(channel, channel.url)
    if kind == ChannelKind.EMAIL:
        _email(channel, payload)
        return
    headers = {"User-Agent": USER_AGENT}
    url = channel.url
    if kind == ChannelKind.WEBHOOK:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
        if channel.secret:
            digest = hmac.new(channel.secret.encode(), body, hashlib.sha256)
            headers["X-SOLLOL-Signature"] = "sha256=" + digest.hexdigest()
    elif kind == ChannelKind.SLACK:
        body = json.dumps({"text": text_of(payload)}).encode()
        headers["Content-Type"] = "application/json"
    elif kind == ChannelKind.DISCORD:
        body = json.dumps({"content": text_of(payload)[:2000]}).encode()
        headers["Content-Type"] = "application/json"
    elif kind == ChannelKind.NTFY:
        body = text_of(payload).encode()
        resolved = payload["status"] == "resolved"
        critical = any(a["severity"] == "critical" for a in payload.get("alerts", ()))
        headers["Title"] = payload["message"][:200].encode("ascii", "replace").decode()
        headers["Priority"] = "5" if critical and not resolved else "3"
        headers["Tags"] = "white_check_mark" if resolved else "rotating_light"
    elif kind == ChannelKind.ALERTMANAGER:
        url = url.rstrip("/") + "/api/v2/alerts"
        body = json.dumps(alertmanager_alerts(payload)).encode()
        headers["Content-Type"] = "application/json"
    else:
        raise SendError(f"unknown channel kind {kind!r}")
    try:
        response = requests.post(
            url,
            data=body,
            headers=headers,
            timeout=settings.SOLLOL_ALERT_SEND_TIMEOUT,
            allow_redirects=False,
        )
    except requests.Timeout:
        raise SendError(
            f"no answer within {settings.SOLLOL_ALERT_SEND_TIMEOUT:g} s"
        ) from None
    except requests.RequestException as exc:
        raise SendError(
            f"cannot reach {urlsplit(url).netloc}: {type(exc).__name__}"
        ) from None
    if not 200 <= response.status_code < 300:
        raise SendError(f"answered {response.status_code}: {response.text[:200]}")


def alertmanager_alerts(payload: dict) -> list[dict]:
    """Alertmanager's API v2 body: one alert each, resolved ones with their end.
    The subject's own labels go along (routes may match them), under ours."""
    listed = []
    for alert in payload.get("alerts", ()):
        entry = {
            "labels": {
                **alert.get("labels", {}),
                "alertname": alert["rule"],
                "subject": alert["subject"],
                "severity": alert["severity"],
                "service": "sollol",
            },
            "annotations": {"summary": alert["message"] or alert["rule"]},
            "startsAt": alert["started_at"],
        }
        if alert["ended_at"]:
            entry["endsAt"] = alert["ended_at"]
        listed.append(entry)
    return listed


def _email(channel: Channel, payload: dict) -> None:
    """Through Django's SMTP e-mail backend, at SOLLOL_SMTP_URL (or the channel's)."""
    recipients = [r.strip() for r in channel.recipients.split(",") if r.strip()]
    if not recipients:
        raise SendError("no recipients")
    url = channel.url or settings.SOLLOL_SMTP_URL
    if not url:
        raise SendError("no SMTP server: set SOLLOL_SMTP_URL")
    parts = urlsplit(url)
    connection = get_connection(
        "django.core.mail.backends.smtp.EmailBackend",
        host=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_ssl=parts.scheme == "smtps",
        timeout=settings.SOLLOL_ALERT_SEND_TIMEOUT,
        fail_silently=False,
    )
    message = EmailMessage(
        subject=payload["message"][:200],
        body=text_of(payload),
        from_email=settings.SOLLOL_ALERT_EMAIL_FROM,
        to=recipients,
        connection=connection,
    )
    try:
        message.send()
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"SMTP {parts.hostname}: {exc}"[:300]) from None
