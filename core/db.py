"""Database helpers the ORM does not offer cheaply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def insert_many(
    objects: Sequence[models.Model], *, ignore_conflicts: bool = False
) -> None:
    """Insert rows with one prepared INSERT run for each (executemany).

    Like bulk_create without returning ids, for the busiest writers (the
    gateway's records and spans): QuerySet.bulk_create compiles a placeholder
    and a prepared value per field and row in Python; executemany sends one
    statement with each row's values, adapted by the fields as save() would,
    except that the values of text, number and boolean fields that are exactly
    str, int, float, bool or None go as they are (an enum's member, say, is
    still prepared by its field).
    With ignore_conflicts, a row whose unique key is taken is skipped.
    """
    if not objects:
        return
    meta = objects[0]._meta
    fields = [f for f in meta.concrete_fields if not isinstance(f, models.AutoField)]
    quote = connection.ops.quote_name
    conflict = OnConflict.IGNORE if ignore_conflicts else None
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (
        f"{connection.ops.insert_statement(on_conflict=conflict)} "
        f"{quote(meta.db_table)} ({columns}) VALUES ({placeholders})"
    )
    suffix = connection.ops.on_conflict_suffix_sql(fields, conflict, None, None)
    if suffix:
        sql = f"{sql} {suffix}"
    plain = [isinstance(field, _AS_THEY_ARE) for field in fields]
    rows = [
        [
            value
            if as_is and type(value := getattr(obj, field.attname)) in _PLAIN_TYPES
            else field.get_db_prep_save(field.pre_save(obj, True), connection)
            for field, as_is in zip(fields, plain, strict=True)
        ]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


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
