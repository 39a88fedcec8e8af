"""Every change of alerting state: rules checked, alerts moved on, notifications queued.

`evaluate(now)` is one round. For each enabled rule it asks its condition
(activity.alerting) what is true now, and moves each subject's alert along:
pending when the condition starts to hold, firing once it held `for_seconds`,
resolved once it has not held for as long again (so a subject that flaps is one
alert, told once firing and once resolved, never once a flip). A condition that
fails to be read leaves its alerts as they are.

Notifications come out of the same transaction, as `Delivery` rows (an outbox):
the alerts of one rule that began firing (or resolved) are told together, once
the first of them has waited SOLLOL_ALERT_GROUP_WAIT and no alert of the rule
that began within SOLLOL_ALERT_GROUP_GATHER of it is still pending; a firing
alert is told
again every rule.repeat_seconds unless acknowledged; a silenced one is not told
(and is told once its silence ends, if it still fires). alerts.delivery sends
them. On PostgreSQL one process evaluates at a time (an advisory lock), so
several web and worker processes never tell anything twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import logging
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, Q

from activity import alerting
from activity.services import NewEvent, record_events
from alerts.choices import (
    ALERT_STREAM,
    EVALUATE_TASK,
    SEVERITY_RANK,
    AlertState,
    DeliveryState,
    Source,
)
from alerts.models import (
    Alert,
    Channel,
    Delivery,
    OpenAlertsVersion,
    Rule,
    Silence,
)
from alerts.validation import rule_defaults
from core import labels, wakeups
from core.db import read_values, save_fields

logger = logging.getLogger(__name__)

EVALUATION_LOCK = 0x50110A1E  # pg_try_advisory_xact_lock key: one evaluator at once
OPEN = (AlertState.PENDING, AlertState.FIRING)
EMPTY: Mapping[str, str] = {}  # no labels (never changed: shared)


def ensure_builtin_rules() -> None:
    """One rule per registered condition, with its defaults (kept as changed)."""
    for condition in alerting.conditions().values():
        Rule.objects.get_or_create(
            name=condition.kind,
            defaults={**rule_defaults(condition), "source": Source.BUILTIN},
        )


def _exclusive() -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite: one process, and its writes are serialised anyway
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [EVALUATION_LOCK])
        return bool(cursor.fetchone()[0])


def _matches(pattern: str, value: str) -> bool:
    return not pattern or fnmatch.fnmatchcase(value, pattern)


def active_silences(now: dt.datetime) -> list[Silence]:
    return list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))


def silenced_by(
    silences: Sequence[Silence],
    rule: str,
    subject: str,
    labelled: Mapping[str, str] = EMPTY,
) -> bool:
    return any(
        _matches(s.rule, rule)
        and _matches(s.subject, subject)
        and labels.matches(s.labels, labelled)
        for s in silences
    )


def evaluate(now: dt.datetime) -> dict[str, int]:
    """One round of every enabled rule; return what changed, by kind of change."""
    if not _evaluating.acquire(blocking=False):
        return _skipped()  # this process is evaluating in another thread
    try:
        return _evaluate(now)
    finally:
        _evaluating.release()


def _skipped() -> dict[str, int]:
    # What woke this one may not be in the other's reading: again soon.
    return {"skipped": 1, "next_in_ms": SKIPPED_RETRY_MS}


def _evaluate(now: dt.datetime) -> dict[str, int]:
    # Most rounds change nothing. Those only read, without the write lock: on
    # SQLite every transaction here takes it at BEGIN (IMMEDIATE), and a heartbeat
    # batch that found it taken waited in SQLite's busy-handler steps (1, 2, 5,
    # 10, 15 ms...), so a 15-ms round cost the heartbeats behind it 18-33 ms.
    quiet = _quiet_round(now)
    if quiet is not None:
        return quiet
    counts: dict[str, int] = defaultdict(int)
    with transaction.atomic():
        if not _exclusive():
            return _skipped()  # another process is evaluating right now
        rules = {rule.id: rule for rule in Rule.objects.all()}
        version, start_rows = _start_rows()
        silences = active_silences(now)
        round_ = _Round(now, rules, start_rows, silences)
        created, changed, gone = round_.created, round_.changed, round_.gone
        counts.update(round_.counts)
        if gone:
            Alert.objects.filter(id__in=gone).delete()
        Alert.objects.bulk_create(created, batch_size=500)
        # Only what changed is written: a round with nothing new writes nothing.
        updated = [alert for alert in changed if id(alert) in round_.dirty]
        if updated:
            save_fields(updated, WRITTEN)
        if gone or created or updated:
            version = _new_version()
            OpenAlertsVersion.objects.filter(id=1).update(version=version)
        counts["deliveries"] = plan_notifications(now, rules, silences)
        record_events(round_.events, now=now)
    _keep(version, start_rows, set(gone), created)  # committed: true for next round
    return _with_next_due(counts, [*created, *changed], rules, now)


def _quiet_round(now: dt.datetime) -> dict[str, int] | None:
    """The round, read outside any transaction, when it would write nothing: no
    alert moves and nothing is due to be told. None: run it in the write lock."""
    rules = {rule.id: rule for rule in Rule.objects.all()}
    version = (
        OpenAlertsVersion.objects.filter(id=1).values_list("version", flat=True).first()
    )
    if version is None or _kept.version != version:
        return None  # the open alerts must be read in the round that writes
    round_ = _Round(now, rules, _kept.rows, active_silences(now), dry=True)
    if (
        round_.created
        or round_.gone
        or round_.dirty
        or round_.events
        or _to_tell(now, rules)
    ):
        return None  # its findings are read again, in the lock: what it writes is
    # what holds then
    return _with_next_due({}, round_.changed, rules, now)


def _with_next_due(
    counts: dict[str, int], alerts: list[Any], rules: dict[int, Rule], now: dt.datetime
) -> dict[str, int]:
    due = _next_due(alerts, rules)
    if due is not None:
        counts["next_in_ms"] = max(0, int((due - now).total_seconds() * 1000))
    return counts


class _Round:
    """What one round finds: each enabled rule's condition asked, its subjects'
    alerts moved along in memory (created, changed, dirty: to be written; gone:
    pending ones that no longer hold; events: what to say). dry: the open rows
    are the kept ones and must not move; any move is only noted."""

    def __init__(
        self,
        now: dt.datetime,
        rules: dict[int, Rule],
        start_rows: list[Any],
        silences: list[Silence],
        *,
        dry: bool = False,
    ) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.events: list[NewEvent] = []
        self.created: list[Alert] = []
        self.changed: list[Any] = []
        self.dirty: set[int] = set()  # id() of alerts whose row must be written
        self.gone: list[int] = []
        open_alerts: dict[tuple[int, str], Any] = {
            (row.rule_id, row.subject): (dataclasses.replace(row) if dry else row)
            for row in start_rows
        }
        self._run(now, rules, open_alerts, silences)

    def _run(
        self,
        now: dt.datetime,
        rules: dict[int, Rule],
        open_alerts: dict[tuple[int, str], Any],
        silences: list[Silence],
    ) -> None:
        counts, events, dirty = self.counts, self.events, self.dirty
        created, changed, gone = self.created, self.changed, self.gone
        conditions = alerting.conditions()
        by_rule: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for key in open_alerts:
            by_rule[key[0]].append(key)
        asked: dict[tuple, list[alerting.Finding]] = {}
        memo: dict = {}  # what the conditions read, once a round (Check.once)
        for rule in rules.values():
            condition = conditions.get(rule.kind)
            if not rule.enabled or condition is None:
                continue
            window = rule.window_seconds or condition.window
            check = alerting.Check(
                rule.threshold, dt.timedelta(seconds=window), now, memo
            )
            try:
                # Rules of one kind and settings (scoped differently) ask once;
                # a kind that takes no threshold or window is one question.
                key = (
                    rule.kind,
                    rule.threshold if condition.threshold is not None else None,
                    window if condition.window else 0,
                )
                if key not in asked:
                    asked[key] = condition.find(check)
                findings = asked[key]
                # The subjects' labels, read only when there is a finding to label.
                labelled = (
                    alerting.labels_of(condition.subject, check) if findings else EMPTY
                )
            except Exception:
                logger.exception("alert rule %s: its condition failed", rule.name)
                for key in by_rule[rule.id]:
                    open_alerts.pop(key, None)  # left as they are this round
                continue
            holding = set()
            if rule.subjects:  # scoped: one compiled glob for all its findings
                scoped = re.compile(fnmatch.translate(rule.subjects)).match
                findings = [f for f in findings if scoped(f.subject)]
            if rule.labels:  # scoped by the subjects' labels
                findings = [
                    f
                    for f in findings
                    if labels.matches(rule.labels, labelled.get(f.subject, EMPTY))
                ]
            for finding in findings:
                holding.add(finding.subject)
                alert = open_alerts.pop((rule.id, finding.subject), None)
                subject_labels = labelled.get(finding.subject, EMPTY)
                if alert is None:
                    alert = Alert(
                        rule=rule,
                        subject=finding.subject[:300],
                        labels=subject_labels,
                        state=AlertState.PENDING,
                        severity=rule.severity,
                        started_at=now,
                    )
                    created.append(alert)
                else:
                    changed.append(alert)
                    if alert.labels != subject_labels:
                        alert.labels = subject_labels
                        dirty.add(id(alert))
                if _moved(alert, finding):
                    alert.value, alert.message = finding.value, finding.message
                    dirty.add(id(alert))
                if alert.cleared_at is not None:
                    alert.cleared_at = None
                    dirty.add(id(alert))
                if (
                    alert.state == AlertState.PENDING
                    and (now - alert.started_at).total_seconds() >= rule.for_seconds
                ):
                    alert.state = AlertState.FIRING
                    alert.fired_at = now
                    # What it says when it fires is what it says now.
                    alert.value, alert.message = finding.value, finding.message
                    dirty.add(id(alert))
                    events.append(_event(alert, rule, "alert_firing"))
                    counts["fired"] += 1
            # What no longer holds, for this rule.
            for key in by_rule[rule.id]:
                alert = open_alerts.pop(key, None)
                if alert is None:
                    continue  # it held this round
                if alert.state == AlertState.PENDING:
                    gone.append(alert.id)  # never fired: nothing to tell
                    continue
                if alert.cleared_at is None:
                    alert.cleared_at = now
                    dirty.add(id(alert))
                if (now - alert.cleared_at).total_seconds() >= rule.for_seconds:
                    alert.state = AlertState.RESOLVED
                    alert.ended_at = now
                    dirty.add(id(alert))
                    events.append(_event(alert, rule, "alert_resolved"))
                    counts["resolved"] += 1
                changed.append(alert)
        # Alerts of rules disabled, removed or of a kind no longer known.
        for alert in open_alerts.values():
            rule = rules.get(alert.rule_id)
            if alert.state == AlertState.PENDING or rule is None:
                gone.append(alert.id)
                continue
            alert.state, alert.ended_at = AlertState.RESOLVED, now
            dirty.add(id(alert))
            events.append(_event(alert, rule, "alert_resolved"))
            changed.append(alert)
            counts["resolved"] += 1
        for alert in [*created, *changed]:
            silenced = bool(silences) and silenced_by(
                silences, rules[alert.rule_id].name, alert.subject, alert.labels
            )
            if silenced != alert.silenced:
                alert.silenced = silenced
                dirty.add(id(alert))


def _next_due(alerts: Iterable[Any], rules: dict[int, Rule]) -> dt.datetime | None:
    """When the first pending alert would fire, or a cleared one resolve, if its
    condition stays as it is: the scheduler evaluates again then, not later."""
    due = []
    for alert in alerts:
        rule = rules.get(alert.rule_id)
        if rule is None:
            continue
        since = alert.started_at if alert.state == AlertState.PENDING else None
        if alert.state == AlertState.FIRING and alert.cleared_at is not None:
            since = alert.cleared_at
        if since is not None:
            due.append(since + dt.timedelta(seconds=rule.for_seconds))
    return min(due, default=None)


SKIPPED_RETRY_MS = 300

WRITTEN = [
    "state",
    "value",
    "message",
    "fired_at",
    "cleared_at",
    "ended_at",
    "silenced",
    "labels",
]
VALUE_MOVES = 0.05  # a value that moved less than this share is not written again


def _moved(alert: Alert, finding: alerting.Finding) -> bool:
    """Whether what the finding says differs enough from the stored alert."""
    if finding.message != alert.message and (
        finding.value is None or alert.value is None
    ):
        return True
    old, new = alert.value, finding.value
    if (old is None) != (new is None):
        return True
    if old is None or new is None:
        return False
    return abs(new - old) > VALUE_MOVES * max(abs(old), abs(new), 1e-9)


@dataclasses.dataclass(slots=True, eq=False)
class _OpenRow:
    """An open alert as evaluate() reads and writes it, without a model instance
    (4,000 of those took a quarter of a round); core.db.save_fields writes it."""

    _meta: ClassVar = Alert._meta
    id: int
    rule_id: int
    subject: str
    state: str
    severity: str
    value: float | None
    message: str
    started_at: dt.datetime
    fired_at: dt.datetime | None
    cleared_at: dt.datetime | None
    ended_at: dt.datetime | None
    silenced: bool
    acked_by: str
    labels: dict

    @property
    def pk(self) -> int:
        return self.id


_OPEN_COLUMNS = [field.name for field in dataclasses.fields(_OpenRow)]


def _open_rows() -> list[_OpenRow]:
    rows = read_values(Alert.objects.filter(state__in=OPEN), _OPEN_COLUMNS)
    return [_OpenRow(*row) for row in rows]


@dataclasses.dataclass
class _Kept:
    """The open alerts as this process's last committed round left them, and the
    OpenAlertsVersion that round wrote (None: nothing kept)."""

    version: int | None = None
    rows: list[_OpenRow] = dataclasses.field(default_factory=list)


_kept = _Kept()
_evaluating = threading.Lock()  # one round at a time in a process: it owns _kept


def _start_rows() -> tuple[int, list[_OpenRow]]:
    """The open alerts at the start of a round: the kept ones when nobody wrote
    open alerts since this process's last round (the version says), else read.
    Reading 3,000 of them was a third of a round."""
    version = (
        OpenAlertsVersion.objects.filter(id=1).values_list("version", flat=True).first()
    )
    kept, _kept.version = _kept.version, None  # until this round commits
    if version is None:  # not known (a new or emptied database): start one
        OpenAlertsVersion.objects.get_or_create(id=1)
        return 0, _open_rows()
    if kept == version:
        return version, _kept.rows
    return version, _open_rows()


def _keep(
    version: int, start_rows: list[_OpenRow], gone: set[int], created: list[Alert]
) -> None:
    """Keep what this committed round left open (its rows were moved in place)."""
    rows = [r for r in start_rows if r.state in OPEN and r.id not in gone]
    for alert in created:
        if alert.id is None:
            return  # a database that does not say what it inserted: read again
        rows.append(_OpenRow(*(getattr(alert, name) for name in _OPEN_COLUMNS)))
    _kept.rows, _kept.version = rows, version


def changed_open_alerts() -> None:
    """Say, in the writer's transaction, that open alerts were written outside an
    evaluation round, so the evaluating process reads them again."""
    OpenAlertsVersion.objects.filter(id=1).update(version=_new_version())


def _new_version() -> int:
    # Drawn, not counted: a version rolled back with its transaction is never
    # handed out again by the next writer.
    return secrets.randbits(62)


def _event(alert: Any, rule: Rule, kind: str) -> NewEvent:
    words = {
        "alert_firing": "firing",
        "alert_resolved": "resolved",
        "alert_acknowledged": f"acknowledged by {alert.acked_by}",
    }[kind]
    return NewEvent(
        stream=ALERT_STREAM,
        type=kind,
        message=f"{rule.name} {words}: {alert.message or alert.subject}"[:500],
        payload={
            "rule": rule.name,
            "subject": alert.subject,
            "severity": alert.severity,
            "value": alert.value,
        },
    )


# --- notifications ---------------------------------------------------------------


def plan_notifications(
    now: dt.datetime, rules: dict[int, Rule], silences: Sequence[Silence]
) -> int:
    """Queue what is due to be told; return how many deliveries were queued."""
    wait = dt.timedelta(seconds=settings.SOLLOL_ALERT_GROUP_WAIT)
    groups: dict[tuple[int, str], list[Alert]] = defaultdict(list)
    told: list[Alert] = []
    firing = Alert.objects.filter(state=AlertState.FIRING, silenced=False)
    for alert in firing.filter(notified_at__isnull=True):
        groups[(alert.rule_id, "firing")].append(alert)
    # Reminders: each rule's own repeat. The database is asked only for what the
    # shortest repeat makes due (one condition, not one a rule), the rest here.
    repeats = {r.id: r.repeat_seconds for r in rules.values() if r.repeat_seconds > 0}
    if repeats:
        since = now - dt.timedelta(seconds=min(repeats.values()))
        for alert in firing.filter(notified_at__lte=since, acked_at__isnull=True):
            repeat = repeats.get(alert.rule_id)
            if repeat and alert.notified_at <= now - dt.timedelta(seconds=repeat):
                groups[(alert.rule_id, "firing")].append(alert)
    resolved = Alert.objects.filter(
        state=AlertState.RESOLVED, resolve_notified=False, notified_at__isnull=False
    )
    for alert in resolved:
        groups[(alert.rule_id, "resolved")].append(alert)
    queued = 0
    channels = list(Channel.objects.filter(enabled=True))
    coming = _pending_due(rules) if groups else {}
    gather = dt.timedelta(seconds=settings.SOLLOL_ALERT_GROUP_GATHER)
    for (rule_id, status), alerts in groups.items():
        rule = rules.get(rule_id)
        if rule is None:
            continue
        moments = [
            (a.fired_at if status == "firing" else a.ended_at) or now for a in alerts
        ]
        if status == "firing" and not any(a.notified_at for a in alerts):
            first = min(moments)
            # A group waits until its oldest member has waited GROUP_WAIT, and
            # while an alert of its rule that began with it (within GATHER) is
            # still pending: ten nodes that die in the same minute are one
            # notification, told once the last of them has held "for".
            if first + wait > now:
                continue
            due = coming.get(rule_id)
            if due is not None and due <= first + gather and now < first + gather:
                continue
        payload = notification(status, rule, alerts)
        for channel in channels:
            if wants(channel, rule):
                Delivery.objects.create(
                    channel=channel,
                    status=status,
                    rule=rule.name,
                    payload=payload,
                    next_attempt_at=now,
                    created=now,
                )
                queued += 1
        for alert in alerts:
            if status == "firing":
                alert.notified_at = now
            else:
                alert.resolve_notified = True
            told.append(alert)
    if told:
        save_fields(told, ["notified_at", "resolve_notified"])
    # A resolved alert nobody was told of firing (silenced all along) stays quiet.
    Alert.objects.filter(
        state=AlertState.RESOLVED, resolve_notified=False, notified_at__isnull=True
    ).update(resolve_notified=True)
    return queued


def _to_tell(now: dt.datetime, rules: dict[int, Rule]) -> bool:
    """Whether plan_notifications may have something to queue or mark: an alert
    firing and not yet told, a reminder due, a resolution not yet told."""
    firing = Q(state=AlertState.FIRING, silenced=False)
    due = Q(notified_at__isnull=True)
    repeats = [r.repeat_seconds for r in rules.values() if r.repeat_seconds > 0]
    if repeats:
        since = now - dt.timedelta(seconds=min(repeats))
        due |= Q(notified_at__lte=since, acked_at__isnull=True)
    return Alert.objects.filter(
        (firing & due) | Q(state=AlertState.RESOLVED, resolve_notified=False)
    ).exists()


def _pending_due(rules: dict[int, Rule]) -> dict[int, dt.datetime]:
    """When each rule's first pending (unsilenced) alert would fire."""
    pending = (
        Alert.objects.filter(state=AlertState.PENDING, silenced=False)
        .values("rule_id")
        .annotate(first=Min("started_at"))
    )
    return {
        row["rule_id"]: row["first"]
        + dt.timedelta(seconds=rules[row["rule_id"]].for_seconds)
        for row in pending
        if row["rule_id"] in rules
    }


def wants(channel: Channel, rule: Rule) -> bool:
    return _matches(channel.rules, rule.name) and SEVERITY_RANK.get(
        rule.severity, 0
    ) >= SEVERITY_RANK.get(channel.min_severity, 0)


def notification(status: str, rule: Rule, alerts: Iterable[Alert]) -> dict:
    """The generic webhook body (README: Alerting), which every channel formats."""
    alerts = list(alerts)
    listed = [
        {
            "rule": rule.name,
            "subject": alert.subject,
            "severity": alert.severity,
            "started_at": _iso(alert.fired_at or alert.started_at),
            "ended_at": _iso(alert.ended_at),
            "value": alert.value,
            "message": alert.message,
            "labels": alert.labels,
        }
        for alert in sorted(alerts, key=lambda a: a.subject)
    ]
    subjects = ", ".join(a["subject"] for a in listed[:10])
    more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
    words = "FIRING" if status == "firing" else "RESOLVED"
    return {
        "status": status,
        "alerts": listed,
        "message": f"[{words}] {rule.description or rule.name} ({rule.severity}): "
        f"{subjects}{more}",
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


# --- what people do ----------------------------------------------------------------


def acknowledge(alert: Alert, who: str, now: dt.datetime) -> Alert:
    """Someone is on it: no more reminders; every viewer hears who."""
    alert.acked_by, alert.acked_at = who[:150], now
    with transaction.atomic():
        alert.save(update_fields=["acked_by", "acked_at"])
        changed_open_alerts()
        event = _event(alert, alert.rule, "alert_acknowledged")
        event.payload["by"] = alert.acked_by
        record_events([event], now=now)
    return alert


def silence(
    rule: str,
    subject: str,
    seconds: float,
    who: str,
    why: str,
    now: dt.datetime,
    chosen: Mapping[str, str] = EMPTY,
) -> Silence:
    """Silence what matches (globs, and a label selector) for a while. The open
    alerts it covers are marked at once, and every viewer hears of it; the next
    round sends nothing for them."""
    with transaction.atomic():
        made = Silence.objects.create(
            rule=rule,
            subject=subject,
            labels=dict(chosen),
            starts_at=now,
            ends_at=now + dt.timedelta(seconds=seconds),
            created_by=who,
            comment=why,
        )
        marked = _mark_silenced(now)
        record_events([_silence_event(made, "silence_created", marked)], now=now)
    return made


def end_silence(silence_id: int, now: dt.datetime) -> Silence | None:
    """End an active silence now; None when there is none of that id. What it
    covered is told again by the next round if it still fires."""
    with transaction.atomic():
        ended = (
            Silence.objects.select_for_update()
            .filter(id=silence_id, ends_at__gt=now)
            .first()
        )
        if ended is None:
            return None
        ended.ends_at = now
        ended.save(update_fields=["ends_at"])
        marked = _mark_silenced(now)
        record_events([_silence_event(ended, "silence_ended", marked)], now=now)
    transaction.on_commit(lambda: wakeups.wake(EVALUATE_TASK))
    return ended


def _mark_silenced(now: dt.datetime) -> int:
    """Set each open alert's `silenced` to what the active silences say; return
    how many changed. Each is set to its value, not flipped: an evaluation that
    wrote it meanwhile cannot be inverted."""
    silences = active_silences(now)
    names = dict(Rule.objects.values_list("id", "name"))
    open_alerts = Alert.objects.filter(state__in=OPEN)
    wanted: dict[bool, list[int]] = {True: [], False: []}
    for alert_id, rule_id, subject, was, labelled in open_alerts.values_list(
        "id", "rule_id", "subject", "silenced", "labels"
    ):
        now_silenced = silenced_by(silences, names.get(rule_id, ""), subject, labelled)
        if now_silenced != was:
            wanted[now_silenced].append(alert_id)
    for value, ids in wanted.items():
        if ids:
            Alert.objects.filter(id__in=ids).update(silenced=value)
    if wanted[True] or wanted[False]:
        changed_open_alerts()
    return len(wanted[True]) + len(wanted[False])


def _silence_event(made: Silence, kind: str, marked: int) -> NewEvent:
    chosen = ",".join(f"{name}={glob}" for name, glob in made.labels.items())
    what = " ".join(
        part
        for part in (
            made.rule and f"rule {made.rule}",
            made.subject and made.subject,
            chosen and f"labels {chosen}",
        )
        if part
    )
    if kind == "silence_created":
        words = f"Silenced {what} until {_iso(made.ends_at)} by {made.created_by}"
        words += f": {made.comment}"
    else:
        words = f"Silence of {what} ended"
    return NewEvent(
        stream=ALERT_STREAM,
        type=kind,
        message=words[:500],
        payload={
            "silence": made.id,
            "rule": made.rule,
            "subject": made.subject,
            "labels": made.labels,
            "ends_at": _iso(made.ends_at),
            "by": made.created_by,
            "alerts": marked,
        },
    )


def test_delivery(channel: Channel, now: dt.datetime) -> Delivery:
    """Queue a test notification to one channel."""
    return Delivery.objects.create(
        channel=channel,
        status="test",
        payload={
            "status": "firing",
            "alerts": [],
            "message": f"[TEST] a test notification from SOLLOL to {channel.name}",
        },
        next_attempt_at=now,
        created=now,
        state=DeliveryState.QUEUED,
    )


def prune(now: dt.datetime) -> dict[str, int]:
    """Forget resolved alerts, ended silences and finished deliveries older than
    SOLLOL_ALERT_RETENTION seconds (open alerts and queued sends are kept)."""
    before = now - dt.timedelta(seconds=settings.SOLLOL_ALERT_RETENTION)
    alerts, _ = Alert.objects.filter(
        state=AlertState.RESOLVED, ended_at__lt=before
    ).delete()
    silences, _ = Silence.objects.filter(ends_at__lt=before).delete()
    deliveries, _ = Delivery.objects.filter(
        state__in=[DeliveryState.SENT, DeliveryState.FAILED], created__lt=before
    ).delete()
    return {"alerts": alerts, "silences": silences, "deliveries": deliveries}
