"""/api/alerts: alerts, rules, silences, channels and the delivery log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from activity import alerting
from alerts import delivery, services
from alerts.api import schemas
from alerts.choices import AlertState, Source
from alerts.models import Alert, Channel, Delivery, Rule, Silence
from alerts.validation import (
    apply_rule_fields,
    channel_fields,
    glob,
    new_rule,
    number,
)
from core import labels
from core.jsonio import PayloadError
from core.schema import query
from core.validators import query_int, text

MAX_PAGE = 1000


def _when(moment: dt.datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def alert_data(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "rule": alert.rule.name,
        "subject": alert.subject,
        "labels": alert.labels,
        "state": alert.state,
        "severity": alert.severity,
        "value": alert.value,
        "message": alert.message,
        "started_at": _when(alert.started_at),
        "fired_at": _when(alert.fired_at),
        "ended_at": _when(alert.ended_at),
        "silenced": alert.silenced,
        "acked_by": alert.acked_by or None,
        "acked_at": _when(alert.acked_at),
    }


def rule_data(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind,
        "severity": rule.severity,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "for_seconds": rule.for_seconds,
        "repeat_seconds": rule.repeat_seconds,
        "subjects": rule.subjects,
        "labels": rule.labels,
        "enabled": rule.enabled,
        "source": rule.source,
        "description": rule.description,
    }


def silence_data(silence: Silence) -> dict[str, Any]:
    return {
        "id": silence.id,
        "rule": silence.rule,
        "subject": silence.subject,
        "labels": silence.labels,
        "starts_at": _when(silence.starts_at),
        "ends_at": _when(silence.ends_at),
        "created_by": silence.created_by,
        "comment": silence.comment,
    }


def channel_data(channel: Channel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "recipients": channel.recipients,
        "has_secret": bool(channel.secret),  # the secret itself is never shown
        "rules": channel.rules,
        "min_severity": channel.min_severity,
        "enabled": channel.enabled,
        "source": channel.source,
        "failing_since": _when(channel.failing_since),
        "last_error": channel.last_error,
    }


def _body(request) -> dict:
    if not isinstance(request.data, dict):
        raise ParseError("the body must be a JSON object")
    return request.data


def overview(state: str = "open", limit: int = 200) -> dict[str, Any]:
    """The alerts in one state (open: pending and firing), the counts, and the
    channels that fail to take notifications (the page's header and panel)."""
    alerts = Alert.objects.select_related("rule")
    if state == "open":
        alerts = alerts.filter(state__in=services.OPEN)
    elif state in AlertState.values:
        alerts = alerts.filter(state=state)
    else:
        raise ParseError("state must be open, firing, pending or resolved")
    firing = Alert.objects.filter(state=AlertState.FIRING)
    return {
        "alerts": [alert_data(a) for a in alerts.order_by("-started_at")[:limit]],
        "firing": firing.count(),
        "pending": Alert.objects.filter(state=AlertState.PENDING).count(),
        "silenced": firing.filter(silenced=True).count(),
        "silences": [
            silence_data(s)
            for s in Silence.objects.filter(ends_at__gt=timezone.now()).order_by(
                "ends_at"
            )[:limit]
        ],
        "channels_failing": [
            {
                "name": channel.name,
                "kind": channel.kind,
                "since": _when(channel.failing_since),
                "error": channel.last_error,
            }
            for channel in Channel.objects.filter(failing_since__isnull=False)
        ],
    }


class AlertListView(APIView):
    query_parameters = {
        "GET": [
            query("state", description="open (pending and firing, the default), "
                  "firing, pending or resolved"),
            query("limit", OpenApiTypes.INT, f"at most {MAX_PAGE}"),
        ]
    }  # fmt: skip
    responses = {"GET": schemas.AlertOverviewSerializer}

    def get(self, request):
        limit = query_int(
            request.query_params.get("limit"),
            "limit",
            default=200,
            low=0,
            high=MAX_PAGE,
        )
        return Response(overview(request.query_params.get("state", "open"), limit))


class AlertAckView(APIView):
    request_bodies = {"POST": schemas.AckSerializer}
    responses = {"POST": schemas.AlertSerializer}

    def post(self, request, alert_id: int):
        alert = Alert.objects.select_related("rule").filter(id=alert_id).first()
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        if alert.state != AlertState.FIRING:
            raise ParseError(f"alert {alert_id} is {alert.state}, not firing")
        who = text(_body(request).get("by"), "by", max_length=150, default="api")
        services.acknowledge(alert, who or "api", timezone.now())
        return Response(alert_data(alert))


class RuleListView(APIView):
    request_bodies = {"POST": schemas.NewRuleSerializer}
    responses = {"GET": schemas.RuleListSerializer, "POST": schemas.RuleSerializer}

    def get(self, request):
        return Response(
            {
                "rules": [rule_data(rule) for rule in Rule.objects.all()],
                "kinds": sorted(alerting.conditions()),
            }
        )

    def post(self, request):
        """Add a rule of a known kind (its own name, threshold, scope...)."""
        body = _body(request)
        rule = new_rule(body, Source.API)
        try:
            rule.save()
        except IntegrityError:
            raise PayloadError(f"a rule named {rule.name} exists already") from None
        return Response(rule_data(rule), status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    request_bodies = {"PATCH": schemas.RuleChangeSerializer}
    responses = {
        "GET": schemas.RuleSerializer,
        "PATCH": schemas.RuleSerializer,
        "DELETE": None,
    }

    def get(self, request, name: str):
        return Response(rule_data(_rule(name)))

    def patch(self, request, name: str):
        rule = _rule(name)
        apply_rule_fields(rule, _body(request))
        rule.save()
        return Response(rule_data(rule))

    def delete(self, request, name: str):
        rule = _rule(name)
        if rule.source == Source.BUILTIN:
            raise ParseError("a built-in rule is disabled, not deleted")
        rule.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def _named(model, name: str, what: str):
    found = model.objects.filter(name=name).first()
    if found is None:
        raise NotFound(f"no {what} {name}")
    return found


def _rule(name: str) -> Rule:
    return _named(Rule, name, "rule")


class SilenceListView(APIView):
    request_bodies = {"POST": schemas.NewSilenceSerializer}
    responses = {
        "GET": schemas.SilenceListSerializer,
        "POST": schemas.SilenceSerializer,
    }

    def get(self, request):
        now = timezone.now()
        silences = Silence.objects.filter(ends_at__gt=now)
        return Response({"silences": [silence_data(s) for s in silences]})

    def post(self, request):
        body = _body(request)
        now = timezone.now()
        seconds = number(body, "duration_seconds", low=1.0)
        if seconds is None:
            raise PayloadError("duration_seconds is required")
        rule = glob(body, "rule", 100) or ""
        subject = glob(body, "subject", 300) or ""
        chosen = labels.selector(body.get("labels"))
        if not rule and not subject and not chosen:
            raise PayloadError(
                "name a rule, a subject (globs) or labels: not everything"
            )
        who = text(body.get("created_by"), "created_by", max_length=150, default=None)
        why = text(body.get("comment"), "comment", max_length=1000, default=None)
        if not who or not why:
            raise PayloadError("created_by and comment are required: who and why")
        made = services.silence(rule, subject, seconds, who, why, now, chosen)
        return Response(silence_data(made), status=status.HTTP_201_CREATED)


class SilenceDetailView(APIView):
    responses = {"DELETE": None}

    def delete(self, request, silence_id: int):
        """End a silence now."""
        if services.end_silence(silence_id, timezone.now()) is None:
            raise NotFound(f"no active silence {silence_id}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelListView(APIView):
    request_bodies = {"POST": schemas.NewChannelSerializer}
    responses = {
        "GET": schemas.ChannelListSerializer,
        "POST": schemas.ChannelSerializer,
    }

    def get(self, request):
        return Response({"channels": [channel_data(c) for c in Channel.objects.all()]})

    def post(self, request):
        body = _body(request)
        name = text(body.get("name"), "name", max_length=100, default=None, strip=True)
        if not name:
            raise PayloadError("name is required")
        channel = Channel(name=name, source=Source.API)
        channel_fields(body, channel)
        try:
            channel.save()
        except IntegrityError:
            raise PayloadError(f"a channel named {name} exists already") from None
        return Response(channel_data(channel), status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    request_bodies = {"PATCH": schemas.ChannelChangeSerializer}
    responses = {
        "GET": schemas.ChannelSerializer,
        "PATCH": schemas.ChannelSerializer,
        "DELETE": None,
    }

    def get(self, request, name: str):
        return Response(channel_data(_channel(name)))

    def patch(self, request, name: str):
        channel = _channel(name)
        if channel.source == Source.ENV:
            raise ParseError(f"{name} comes from the environment: change it there")
        channel_fields(_body(request), channel)
        channel.save()
        return Response(channel_data(channel))

    def delete(self, request, name: str):
        channel = _channel(name)
        if channel.source == Source.ENV:
            raise ParseError(f"{name} comes from the environment: remove it there")
        channel.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def _channel(name: str) -> Channel:
    return _named(Channel, name, "channel")


class ChannelTestView(APIView):
    request_bodies = {"POST": None}
    responses = {"POST": schemas.ChannelTestedSerializer}

    def post(self, request, name: str):
        queued = services.test_delivery(_channel(name), timezone.now())
        delivery.deliver_due()
        return Response({"status": "queued", "delivery": queued.id})


class DeliveryListView(APIView):
    query_parameters = {
        "GET": [query("limit", OpenApiTypes.INT, f"at most {MAX_PAGE}")]
    }
    responses = {"GET": schemas.DeliveryListSerializer}

    def get(self, request):
        limit = query_int(
            request.query_params.get("limit"),
            "limit",
            default=100,
            low=0,
            high=MAX_PAGE,
        )
        rows = Delivery.objects.select_related("channel")[:limit]
        return Response(
            {
                "deliveries": [
                    {
                        "id": d.id,
                        "channel": d.channel.name,
                        "status": d.status,
                        "rule": d.rule,
                        "state": d.state,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "created": _when(d.created),
                        "sent_at": _when(d.sent_at),
                        "next_attempt_at": _when(d.next_attempt_at),
                    }
                    for d in rows
                ]
            }
        )
