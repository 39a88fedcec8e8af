"""Every change to the application registry, and the events it produces."""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Min

from activity.services import NewEvent, record_events
from activity.signals import application_reported
from applications.api.serializers import AppReport, application_data, check_metadata
from applications.choices import APPLICATION_STREAM, AppStatus
from applications.models import Application, SweepMark
from core import realtime
from core.db import insert_many, save_fields

logger = logging.getLogger(__name__)

SWEEP_BATCH = 1000


class TooManyApplications(Exception):
    """The writer's token already has SOLLOL_MAX_APPS_PER_TOKEN applications."""

    refusal = True  # an answer for the client, not a failure to log


class HeartbeatResult(enum.Enum):
    OK = "ok"
    REGISTERED = "registered"  # unknown app_id with a name: the dashboard forgot it
    NOT_FOUND = "not_found"  # unknown app_id and nothing to register it with


def _stale_after(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.SOLLOL_APP_STALE_AFTER)


def _remove_after(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=settings.SOLLOL_APP_REMOVE_AFTER)


def _event(
    type: str, app: Application, now: dt.datetime, message: str, **extra
) -> NewEvent:
    return NewEvent(
        stream=APPLICATION_STREAM,
        type=type,
        message=message,
        payload={**application_data(app, now), **extra},
    )


# What registering an app it knows may change: what the report says, and the clock.
REGISTERED_FIELDS = (
    "name",
    "router_type",
    "version",
    "metadata",
    "labels",
    "status",
    "last_heartbeat",
    "stale_after",
    "remove_after",
)


def _touch(app: Application, now: dt.datetime) -> None:
    app.status = AppStatus.ACTIVE
    app.last_heartbeat = now
    app.stale_after = _stale_after(now)
    app.remove_after = _remove_after(now)


def _apply(app: Application, report: AppReport, *, merge_metadata: bool) -> list[str]:
    """Copy what the report says onto app; return the names of fields that changed."""
    changed = []
    for field in ("name", "router_type", "version"):
        value = getattr(report, field)
        if value is not None and value != getattr(app, field):
            setattr(app, field, value)
            changed.append(field)
    if report.metadata is not None:
        metadata = (
            {**app.metadata, **report.metadata} if merge_metadata else report.metadata
        )
        if metadata != app.metadata:
            # Merged heartbeats must not grow it past the limit one report has.
            app.metadata = check_metadata(metadata)
            changed.append("metadata")
    # Labels are replaced, never merged: a report that gives them gives them all.
    if report.labels is not None and report.labels != app.labels:
        app.labels = report.labels
        changed.append("labels")
    return changed


def _new_application(report: AppReport, now: dt.datetime) -> Application:
    app = Application(
        app_id=report.app_id,
        name=report.name or "",
        router_type=report.router_type or "",
        version=report.version or "",
        metadata=report.metadata or {},
        labels=report.labels or {},
        owner=report.owner,
        start_time=now,
    )
    _touch(app, now)
    return app


def _reported(app: Application, now: dt.datetime) -> None:
    application_reported.send(Application, metadata=app.metadata, now=now)


def _registered_event(app: Application, now: dt.datetime, **extra) -> NewEvent:
    router = f" ({app.router_type})" if app.router_type else ""
    return _event(
        "app_registered",
        app,
        now,
        f"📱 Application started: {app.name}{router}",
        **extra,
    )


def _change_events(
    app: Application, now: dt.datetime, *, recovered: bool, changed: list[str]
) -> list[NewEvent]:
    events = []
    if recovered:
        events.append(
            _event("app_recovered", app, now, f"✅ Application recovered: {app.name}")
        )
    if changed:
        events.append(
            _event(
                "app_updated",
                app,
                now,
                f"📝 Application updated: {app.name} ({', '.join(changed)})",
                changed=changed,
            )
        )
    return events


def _too_many_message() -> str:
    return (
        f"this token already has {settings.SOLLOL_MAX_APPS_PER_TOKEN} applications "
        "registered (SOLLOL_MAX_APPS_PER_TOKEN); unregister some first"
    )


def _insert_or_lock(report: AppReport, now: dt.datetime) -> tuple[Application, bool]:
    """Insert the reported app; if a concurrent request just did, lock and return it.

    Return the application and whether this call created it.
    """
    limit = settings.SOLLOL_MAX_APPS_PER_TOKEN
    if Application.objects.filter(owner=report.owner).count() >= limit:
        raise TooManyApplications(_too_many_message())
    app = _new_application(report, now)
    try:
        with transaction.atomic():
            app.save(force_insert=True)
    except IntegrityError:
        return Application.objects.select_for_update().get(pk=report.app_id), False
    return app, True


def register_application(
    report: AppReport, *, now: dt.datetime
) -> tuple[Application, bool]:
    """Register an application, or update it if its app_id is known.

    Return the application and whether it was created.
    """
    with transaction.atomic():
        app = Application.objects.select_for_update().filter(pk=report.app_id).first()
        if app is None:
            app, created = _insert_or_lock(report, now)
            if created:
                record_events([_registered_event(app, now)], now=now)
                _reported(app, now)
                return app, True
        recovered = app.status == AppStatus.STALE
        changed = _apply(app, report, merge_metadata=False)
        _touch(app, now)
        app.save()
        record_events(
            _change_events(app, now, recovered=recovered, changed=changed), now=now
        )
        if "metadata" in changed:
            _reported(app, now)
    return app, False


class Write(enum.Enum):
    """What an application asks of the registry on the lean lane."""

    REGISTER = "register"
    HEARTBEAT = "heartbeat"
    UNREGISTER = "unregister"  # with the app_id alone, not a report


def apply_writes(writes: Sequence[tuple[Write, Any]], *, now: dt.datetime) -> list[Any]:
    """Apply registrations, heartbeats and unregistrations that arrived together
    (the group-commit lane of core.lean.writer); return for each a
    registration's (app_id, created), a heartbeat's HeartbeatResult, or whether
    an unregistration found its app.

    The registrations first, in one transaction, then the heartbeats in another,
    then the unregistrations: each writes its events last (on PostgreSQL under
    the event-log lock, which must not be held while waiting for row locks), and
    an app that registers and heartbeats in one batch is known to its heartbeat.
    An app that unregisters and writes again in one batch (a quick restart) is
    taken in arrival order: what follows its unregistration is a part of its own.
    """
    results: list[Any] = []
    part: list[tuple[Write, Any]] = []
    gone: set[str] = set()  # unregistered in this part
    for kind, item in writes:
        app_id = item if kind is Write.UNREGISTER else item.app_id
        if app_id in gone:
            results += _apply_part(part, now)
            part, gone = [], set()
        part.append((kind, item))
        if kind is Write.UNREGISTER:
            gone.add(app_id)
    return results + _apply_part(part, now)


def _apply_part(writes: list[tuple[Write, Any]], now: dt.datetime) -> list[Any]:
    results: list[Any] = [None] * len(writes)

    def of(kind: Write) -> list[tuple[int, Any]]:
        return [(i, item) for i, (k, item) in enumerate(writes) if k is kind]

    if registering := of(Write.REGISTER):
        done = register_applications([report for _, report in registering], now=now)
        for (i, _), result in zip(registering, done, strict=True):
            results[i] = result
    if beating := of(Write.HEARTBEAT):
        recorded = record_heartbeats([report for _, report in beating], now=now)
        for i, report in beating:
            results[i] = recorded[report.app_id]
    if leaving := of(Write.UNREGISTER):
        removed = unregister_applications({app_id for _, app_id in leaving}, now=now)
        for i, app_id in leaving:
            results[i] = app_id in removed
    return results


def _known_ids(app_ids: set[str]) -> list[str]:
    """The ids among app_ids that are registered."""
    table = connection.ops.quote_name(Application._meta.db_table)
    marks = ", ".join(["%s"] * len(app_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT app_id FROM {table} WHERE app_id IN ({marks})", list(app_ids)
        )
        return [row[0] for row in cursor.fetchall()]


def _owned(owner: str) -> int:
    """How many applications this owner has registered (a COUNT on its index,
    without building a query each batch of registrations)."""
    table = connection.ops.quote_name(Application._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE owner = %s", [owner])
        return cursor.fetchone()[0]


def register_applications(
    reports: Sequence[AppReport], *, now: dt.datetime
) -> list[tuple[str, bool]]:
    """Register applications that arrived together, in one transaction: the new
    ones in one INSERT, their events last; return (app_id, created) for each.

    An app_id another process inserted meanwhile fails the INSERT (the writer then
    retries each report alone, and finds it known).
    """
    results: list[tuple[str, bool]] = []
    events: list[NewEvent] = []
    reported: list[Application] = []
    with transaction.atomic():
        # Which of them are known, by one plain SELECT: a batch of new apps (a
        # fleet registering at once) builds no ORM query; the known are read
        # whole and locked.
        present = _known_ids({report.app_id for report in reports})
        known = (
            Application.objects.select_for_update().in_bulk(present) if present else {}
        )
        made: dict[str, Application] = {}
        room: dict[str, int] = {}  # new apps each owner may still register
        changed_apps: dict[str, Application] = {}
        for report in reports:
            app = known.get(report.app_id) or made.get(report.app_id)
            if app is None:
                if report.owner not in room:
                    room[report.owner] = settings.SOLLOL_MAX_APPS_PER_TOKEN - _owned(
                        report.owner
                    )
                if room[report.owner] <= 0:
                    raise TooManyApplications(_too_many_message())
                room[report.owner] -= 1
                app = made[report.app_id] = _new_application(report, now)
                events.append(_registered_event(app, now))
                reported.append(app)
                results.append((app.app_id, True))
                continue
            recovered = app.status == AppStatus.STALE
            changed = _apply(app, report, merge_metadata=False)
            _touch(app, now)
            if report.app_id in known:
                changed_apps[report.app_id] = app
            events.extend(
                _change_events(app, now, recovered=recovered, changed=changed)
            )
            if "metadata" in changed:
                reported.append(app)
            results.append((app.app_id, False))
        insert_many(list(made.values()))  # one prepared INSERT, run for each
        # Known apps again (a dashboard restart): one prepared UPDATE run for each.
        save_fields(list(changed_apps.values()), REGISTERED_FIELDS)
        record_events(events, now=now)
        for app in reported:
            _reported(app, now)
    return results


def coalesce_reports(reports: Iterable[AppReport]) -> dict[str, AppReport]:
    """Fold reports that arrived together into one per app, later ones winning."""
    folded: dict[str, AppReport] = {}
    for report in reports:
        earlier = folded.get(report.app_id)
        if earlier is None:
            folded[report.app_id] = report
            continue
        metadata = earlier.metadata
        if report.metadata is not None:
            metadata = {**(earlier.metadata or {}), **report.metadata}
        folded[report.app_id] = AppReport(
            app_id=report.app_id,
            name=report.name if report.name is not None else earlier.name,
            router_type=report.router_type
            if report.router_type is not None
            else earlier.router_type,
            version=report.version if report.version is not None else earlier.version,
            metadata=metadata,
            owner=report.owner,
            labels=report.labels if report.labels is not None else earlier.labels,
        )
    return folded


def record_heartbeats(
    reports: Iterable[AppReport], *, now: dt.datetime
) -> dict[str, HeartbeatResult]:
    """Record heartbeats that arrived together, in one transaction.

    Metadata merges into what is stored, labels given replace the app's; a stale
    app recovers; an unknown app_id with a name is registered again (the
    dashboard may have restarted).
    """
    folded = coalesce_reports(reports)
    results: dict[str, HeartbeatResult] = {}
    events: list[NewEvent] = []
    with transaction.atomic():
        stored = _stored_for_heartbeat(list(folded))
        quiet = [
            app_id
            for app_id, report in folded.items()
            if app_id in stored and _changes_nothing(report, stored[app_id])
        ]
        if quiet:
            # Most heartbeats change nothing but the clock: one UPDATE for all.
            _refresh(quiet, now)
            results.update(dict.fromkeys(quiet, HeartbeatResult.OK))
        noisy = [app_id for app_id in folded if app_id not in results]
        known = Application.objects.select_for_update().in_bulk(noisy)
        reported: list[Application] = []
        for app_id in noisy:
            report = folded[app_id]
            app = known.get(app_id)
            if app is None:
                if not report.name:
                    results[app_id] = HeartbeatResult.NOT_FOUND
                    continue
                app, created = _insert_or_lock(report, now)
                if created:
                    events.append(_registered_event(app, now, reregistered=True))
                else:  # registered a moment ago by a concurrent request
                    _apply(app, report, merge_metadata=True)
                    _touch(app, now)
                    app.save()
                reported.append(app)
                results[app_id] = HeartbeatResult.REGISTERED
                continue
            results[app_id] = HeartbeatResult.OK
            recovered = app.status == AppStatus.STALE
            changed = _apply(app, report, merge_metadata=True)
            _touch(app, now)
            app.save()
            events.extend(
                _change_events(app, now, recovered=recovered, changed=changed)
            )
            if "metadata" in changed:
                reported.append(app)
        record_events(events, now=now)
        for app in reported:
            _reported(app, now)
    return results


# The quiet heartbeat is the hottest path of the product: at a paced 1,000/s,
# building these two statements with the ORM took most of the writer's CPU
# (bench/RESULTS.md, profile). They are written out once here instead.
_TABLE = Application._meta.db_table
_QUIET_FIELDS = ("name", "router_type", "version", "metadata", "status", "labels")


def _stored_for_heartbeat(app_ids: list[str]) -> dict[str, tuple]:
    """Return {app_id: (name, router_type, version, metadata, status, labels)}, rows
    locked; labels as the database gives them (see _changes_nothing)."""
    if not app_ids:
        return {}
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f) for f in ("app_id", *_QUIET_FIELDS))
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {quote(_TABLE)} "
            f"WHERE {quote('app_id')} IN ({', '.join(['%s'] * len(app_ids))}) "
            f"ORDER BY {quote('app_id')}{lock}",
            app_ids,
        )
        rows = cursor.fetchall()
    return {
        app_id: (name, router_type, version, _json(metadata), status, labels)
        for app_id, name, router_type, version, metadata, status, labels in rows
    }


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _changes_nothing(report: AppReport, stored: tuple) -> bool:
    """Return whether the heartbeat only says the app is alive (and it was active)."""
    name, router_type, version, metadata, status, labels = stored
    if status != AppStatus.ACTIVE:
        return False
    # Read only when the heartbeat gives labels: most give none.
    if report.labels is not None and report.labels != _json(labels):
        return False
    for value, current in (
        (report.name, name),
        (report.router_type, router_type),
        (report.version, version),
    ):
        if value is not None and value != current:
            return False
    if report.metadata is None:
        return True
    return isinstance(metadata, dict) and {**metadata, **report.metadata} == metadata


def _refresh(app_ids: list[str], now: dt.datetime) -> None:
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    assignments = ", ".join(
        f"{quote(field)} = %s"
        for field in ("last_heartbeat", "stale_after", "remove_after")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(_TABLE)} SET {assignments} "
            f"WHERE {quote('app_id')} IN ({', '.join(['%s'] * len(app_ids))})",
            [
                adapt(now),
                adapt(_stale_after(now)),
                adapt(_remove_after(now)),
                *app_ids,
            ],
        )


def unregister_application(app_id: str, *, now: dt.datetime) -> Application | None:
    """Remove an application that says it is stopping; return it, or None if unknown."""
    return unregister_applications({app_id}, now=now).get(app_id)


def unregister_applications(
    app_ids: set[str], *, now: dt.datetime
) -> dict[str, Application]:
    """Remove applications that say they are stopping, in one transaction with
    their events; return those that were registered, by app_id."""
    if not app_ids:
        return {}
    with transaction.atomic():
        present = _known_ids(app_ids)
        apps = Application.objects.select_for_update().in_bulk(sorted(present))
        events = [
            _event("app_unregistered", app, now, f"👋 Application stopped: {app.name}")
            for _, app in sorted(apps.items())
        ]
        if apps:
            Application.objects.filter(pk__in=list(apps)).delete()
        record_events(events, now=now)
    return apps


def sweep_applications(*, now: dt.datetime) -> dict[str, int]:
    """Run the lifecycle on schedule: self-preservation, stale, removal."""
    return {
        "preserved": preserve_after_outage(now=now),
        "stale": mark_stale(now=now),
        "removed": remove_expired(now=now),
    }


def next_deadline() -> dt.datetime | None:
    """When the sweep next has work if no heartbeat comes: the first active
    app's stale deadline or the first removal (both indexed)."""
    stale = Application.objects.filter(status=AppStatus.ACTIVE).aggregate(
        first=Min("stale_after")
    )["first"]
    removal = Application.objects.aggregate(first=Min("remove_after"))["first"]
    return min((d for d in (stale, removal) if d is not None), default=None)


def preserve_after_outage(*, now: dt.datetime) -> int:
    """Give every app a full stale timeout again if the sweep itself was not running.

    An outage of the dashboard is not an outage of the apps: without this, the
    first sweep after a restart would call every app stale at once.
    """
    stale_after = dt.timedelta(seconds=settings.SOLLOL_APP_STALE_AFTER)
    with transaction.atomic():
        mark, created = SweepMark.objects.select_for_update().get_or_create(
            name="applications", defaults={"last_run": now}
        )
        outage = created or now - mark.last_run > stale_after
        mark.last_run = now
        mark.save(update_fields=["last_run"])
        if not outage:
            return 0
        active = Application.objects.filter(
            status=AppStatus.ACTIVE, stale_after__lt=_stale_after(now)
        ).update(stale_after=_stale_after(now))
        Application.objects.filter(remove_after__lt=_remove_after(now)).update(
            remove_after=_remove_after(now)
        )
    if active:
        logger.warning(
            "The application sweep had not run since %s: %d applications get a "
            "full %ss before they can be marked stale",
            "ever" if created else mark.last_run.isoformat(),
            active,
            settings.SOLLOL_APP_STALE_AFTER,
        )
    return active


def mark_stale(*, now: dt.datetime) -> int:
    """Mark active apps past their stale deadline as stale; return how many."""
    with transaction.atomic():
        due = list(
            Application.objects.select_for_update(skip_locked=True)
            .filter(status=AppStatus.ACTIVE, stale_after__lte=now)
            .order_by("pk")[:SWEEP_BATCH]
        )
        if not due:
            return 0
        Application.objects.filter(pk__in=[app.pk for app in due]).update(
            status=AppStatus.STALE
        )
        events = []
        for app in due:
            app.status = AppStatus.STALE
            seen = round(app.last_seen_seconds(now))
            message = (
                f"⚠️  Application not responding: {app.name} (last seen {seen}s ago)"
            )
            events.append(
                _event(
                    "app_stale",
                    app,
                    now,
                    message,
                )
            )
        record_events(events, now=now)
    return len(due)


def remove_expired(*, now: dt.datetime) -> int:
    """Delete apps past their removal deadline; return how many."""
    with transaction.atomic():
        due = list(
            Application.objects.select_for_update(skip_locked=True)
            .filter(remove_after__lte=now)
            .order_by("pk")[:SWEEP_BATCH]
        )
        if not due:
            return 0
        events = [
            _event(
                "app_removed",
                app,
                now,
                f"🗑️ Application removed: {app.name} "
                f"(no heartbeat for {round(app.last_seen_seconds(now))}s)",
            )
            for app in due
        ]
        Application.objects.filter(pk__in=[app.pk for app in due]).delete()
        record_events(events, now=now)
    return len(due)


# When this process last published heartbeat samples (see below).
_samples_published: dt.datetime | None = None


def publish_heartbeat_samples(*, now: dt.datetime) -> int:
    """Every few seconds, send viewers the apps heard from since the last time.

    A heartbeat that changes nothing makes no event, yet the page shows how long
    ago each app was last heard from: these samples keep that honest without the
    page polling the registry. Return how many apps were sent.
    """
    global _samples_published
    interval = dt.timedelta(seconds=settings.SOLLOL_APP_SAMPLE_INTERVAL)
    if _samples_published is not None and now - _samples_published < interval:
        return 0
    since = _samples_published or now - interval
    _samples_published = now
    rows = list(
        Application.objects.filter(last_heartbeat__gt=since, last_heartbeat__lte=now)
        .order_by()
        .values_list("app_id", "last_heartbeat")[:SAMPLE_LIMIT]
    )
    if rows:
        realtime.publish_samples(
            APPLICATION_STREAM,
            {
                "apps": [[app_id, seen.timestamp()] for app_id, seen in rows],
                "fields": ["app_id", "last_heartbeat"],
            },
        )
    return len(rows)


SAMPLE_LIMIT = 20_000  # apps per sample message (a bound, not a page)
