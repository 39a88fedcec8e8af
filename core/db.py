"""Database helpers the ORM does not offer cheaply."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import QuerySet
from django.db.models.constants import OnConflict


def save_fields(objects: Sequence[models.Model], field_names: Sequence[str]) -> None:
    """Write these fields of many rows with one prepared UPDATE run for each row.

    QuerySet.bulk_update builds a CASE expression per field and row; for the
    1,000 nodes of a probe cycle that took most of the dashboard's CPU
    (bench/RESULTS.md). executemany sends the same statement with each row's
    values, adapted by the fields themselves as save() would.
    """
    if not objects:
        return
    meta = objects[0]._meta
    fields = [meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(meta.pk.column)} = %s"
    )
    rows = [
        [
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for field in fields
        ]
        + [obj.pk]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def read_values(rows: QuerySet, names: Sequence[str]) -> list[tuple]:
    """rows.values_list(*names) as a list of tuples, without Django's converter
    call for every value of every row.

    For the few hot reads of many rows (the open alerts each evaluation round):
    the drivers already give text, numbers and booleans as Python has them, and
    a datetime is only made aware here when the driver gave it naive (SQLite),
    and JSON decoded where the driver gave its text. Only columns of the
    queryset's own model (no lookups).
    """
    meta = rows.model._meta
    fields = [meta.get_field(name) for name in names]
    for field in fields:
        plain = isinstance(
            field, (*_AS_THEY_ARE, models.DateTimeField, models.JSONField)
        )
        if not (plain or field.is_relation and field.many_to_one):
            raise ValueError(f"read_values reads plain columns, not {field.name}")
    query = rows.values_list(*names)
    sql, params = query.query.get_compiler(using=query.db).as_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    moments = []
    if settings.USE_TZ:
        moments = [
            i for i, f in enumerate(fields) if isinstance(f, models.DateTimeField)
        ]
    texts = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    if not (moments or texts) or not found:
        return [tuple(row) for row in found]
    zone = connection.timezone
    out = []
    for row in found:
        row = list(row)
        for i in moments:
            value = row[i]
            if value is not None and value.tzinfo is None:
                row[i] = value.replace(tzinfo=zone)
        for i in texts:
            if isinstance(row[i], str):
                row[i] = json.loads(row[i])
        out.append(tuple(row))
    return out


def prune_newest(rows: QuerySet, *, keep: int) -> int:
    """Delete all of rows but the newest `keep` (by id); return how many went.

    One query finds the id of the newest row to go, one deletes it and all older:
    no row is read into Python, however long the table.
    """
    boundary = rows.order_by("-pk").values_list("pk", flat=True)[keep:][:1].first()
    if boundary is None:
        return 0
    deleted, _ = rows.filter(pk__lte=boundary).delete()
    return deleted


# Fields whose values the database drivers take as Python gives them.
_AS_THEY_ARE = (
    models.CharField,  # and TextField's kin below
    models.TextField,
    models.IntegerField,  # and its Positive/Small/Big kin
    models.FloatField,
    models.BooleanField,
)
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
_JSON_TYPES = frozenset({dict, list, str, int, float, bool})


def _preparer(field: models.Field) -> Callable[[Any], Any]:
    """Return what turns a value of field into what the driver is given, as
    field.get_db_prep_save would, with the common cases short-cut: plain text,
    numbers and booleans as they are, an aware datetime and plain JSON straight to
    the backend's adapter (the field's own steps only check and convert what
    these already are)."""

    def prepared(value: Any) -> Any:
        return field.get_db_prep_save(value, connection)

    if isinstance(field, _AS_THEY_ARE):

        def plain(value: Any) -> Any:
            return value if type(value) in _PLAIN_TYPES else prepared(value)

        return plain
    if isinstance(field, models.DateTimeField):
        adapt_time = connection.ops.adapt_datetimefield_value
        if connection.vendor == "sqlite" and settings.USE_TZ:
            # What the SQLite backend's adapter does, without its checks each time.
            zone = connection.timezone

            def adapt_time(value: dt.datetime) -> str:
                return str(value.astimezone(zone).replace(tzinfo=None))

        def moment(value: Any) -> Any:
            if type(value) is dt.datetime and value.tzinfo is not None:
                return adapt_time(value)
            return prepared(value)

        return moment
    if isinstance(field, models.JSONField):
        adapt_json, encoder = connection.ops.adapt_json_value, field.encoder

        def document(value: Any) -> Any:
            if value is None:
                return None  # SQL NULL, as get_db_prep_save gives it
            if type(value) in _JSON_TYPES:
                return adapt_json(value, encoder)
            return prepared(value)

        return document
    return prepared


def _insert_sql(meta: Any, fields: list, ignore_conflicts: bool) -> str:
    quote = connection.ops.quote_name
    conflict = OnConflict.IGNORE if ignore_conflicts else None
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"{connection.ops.insert_statement(on_conflict=conflict)} "
        f"{quote(meta.db_table)} ({columns}) VALUES ({placeholders})"
    )
    suffix = connection.ops.on_conflict_suffix_sql(fields, conflict, None, None)
    return f"{sql} {suffix}" if suffix else sql


def _inserted_fields(model: type[models.Model]) -> list:
    return [
        f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)
    ]


def insert_many(
    objects: Sequence[models.Model], *, ignore_conflicts: bool = False
) -> None:
    """Insert rows with one prepared INSERT run for each (executemany).

    Like bulk_create without returning ids, for the busiest writers (the
    gateway's records and spans): QuerySet.bulk_create compiles a placeholder
    and a prepared value per field and row in Python; executemany sends one
    statement with each row's values, adapted by the fields as save() would
    (see _preparer for the short cuts).
    With ignore_conflicts, a row whose unique key is taken is skipped.
    """
    if not objects:
        return
    fields, rows = _prepared_rows(objects)
    with connection.cursor() as cursor:
        cursor.executemany(
            _insert_sql(objects[0]._meta, fields, ignore_conflicts), rows
        )


def _prepared_rows(objects: Sequence[models.Model]) -> tuple[list, list[list]]:
    """The inserted fields of objects' model, and each object's values for them
    as the driver is given them (see _preparer)."""
    fields = _inserted_fields(type(objects[0]))
    preparers = [_preparer(field) for field in fields]
    rows = [
        [
            prepare(field.pre_save(obj, True))
            for field, prepare in zip(fields, preparers, strict=True)
        ]
        for obj in objects
    ]
    return fields, rows


def insert_returning_ids(
    objects: Sequence[models.Model], batch_size: int = 500
) -> None:
    """Insert rows with one multi-row INSERT ... RETURNING a batch, and set each
    object's id, in the order given (as bulk_create does where the database says
    what it inserted: SQLite ≥ 3.35, PostgreSQL).

    For the event log, written with every registration and probe: bulk_create
    compiled a placeholder and a prepared value per field and row, about 0.15 ms
    a row; this prepares each value once (see _preparer) and builds the
    statement's text once a batch size.
    """
    if not objects:
        return
    meta = objects[0]._meta
    fields, rows = _prepared_rows(objects)
    quote = connection.ops.quote_name
    head = (
        f"INSERT INTO {quote(meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) VALUES "
    )
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    tail = f" RETURNING {quote(meta.pk.column)}"
    with connection.cursor() as cursor:
        for start in range(0, len(objects), batch_size):
            chunk = objects[start : start + batch_size]
            params = [
                value for values in rows[start : start + batch_size] for value in values
            ]
            cursor.execute(head + ", ".join([row] * len(chunk)) + tail, params)
            for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = connection.alias


def insert_values(
    model: type[models.Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """insert_many for rows given as {field attname: value}, without making a
    model instance of each (that alone took longer than preparing its values);
    a field a row leaves out gets its default. No auto_now fields here."""
    if not rows:
        return
    fields = _inserted_fields(model)
    preparers = [_preparer(field) for field in fields]
    absent = object()
    values = []
    for row in rows:
        prepared = []
        for field, prepare in zip(fields, preparers, strict=True):
            value = row.get(field.attname, absent)
            prepared.append(prepare(field.get_default() if value is absent else value))
        values.append(prepared)
    with connection.cursor() as cursor:
        cursor.executemany(_insert_sql(model._meta, fields, ignore_conflicts), values)


def add_into(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    key: Sequence[str],
    least: Sequence[str] = (),
    greatest: Sequence[str] = (),
    batch_size: int = 500,
) -> None:
    """Add rows into counters: insert each row, or add it into the row of its key.

    One INSERT ... ON CONFLICT (key) DO UPDATE a batch (SQLite and PostgreSQL):
    every other column is added to the stored one, except those in least and
    greatest, which keep the smaller or larger value. The increment happens in the
    database, under the row's lock, so concurrent writers lose nothing. Rows are
    written in the order given: give them sorted by key, so that two transactions
    lock shared rows in the same order and cannot deadlock. Each key at most once.
    """
    if not rows:
        return
    meta = model._meta
    names = list(key) + [name for name in rows[0] if name not in key]
    fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    smaller, larger = (
        ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    )

    def merged(name: str, column: str) -> str:
        mine, theirs = f"{table}.{column}", f"EXCLUDED.{column}"
        if name in least:
            return f"{smaller}({mine}, {theirs})"
        if name in greatest:
            return f"{larger}({mine}, {theirs})"
        return f"{mine} + {theirs}"

    columns = [quote(field.column) for field in fields]
    updates = ", ".join(
        f"{column} = {merged(name, column)}"
        for name, column in zip(names, columns, strict=True)
        if name not in key
    )
    conflict = ", ".join(columns[: len(key)])
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        for offset in range(0, len(rows), batch_size):
            batch = rows[offset : offset + batch_size]
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                + ", ".join([placeholders] * len(batch))
                + f" ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
            )
            params = [
                field.get_db_prep_save(row[name], connection)
                for row in batch
                for name, field in zip(names, fields, strict=True)
            ]
            cursor.execute(sql, params)
