"""One way to page a long list: ``?limit=&offset=``, answered with the total.

Every list that can grow with the fleet (applications, nodes, backends, traces)
answers ``{"<items>": [...], "total": n, "limit": l, "offset": o}``: the items
from ``offset`` on, at most ``limit`` of them, in a stable order, and how many
there are in all (after the list's filters). Lists that move as fast as they are
read (logs, events) page by id instead (``since`` / ``before``) and say their
total the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.types import OpenApiTypes

from core.jsonio import PayloadError
from core.schema import query
from core.validators import query_int

MAX_OFFSET = 10**9  # past any fleet; a bigger one overflowed the SQL (500)
ID_MAX = 2**63 - 1  # the largest id a bigint holds


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int

    def of(self, items):
        """This page of a queryset or a list."""
        return items[self.offset : self.offset + self.limit]

    def answer(self, key: str, items: list, total: int, **more: Any) -> dict[str, Any]:
        return {
            key: items,
            "total": total,
            "limit": self.limit,
            "offset": self.offset,
            **more,
        }


def page_of(params, *, default: int, maximum: int) -> Page:
    """Read limit and offset from the query parameters (400 when out of range)."""
    limit = query_int(
        params.get("limit"), "limit", default=default, low=0, high=maximum
    )
    offset = query_int(
        params.get("offset"), "offset", default=0, low=0, high=MAX_OFFSET
    )
    return Page(limit, offset)


def page_parameters(default: int, maximum: int) -> list:
    """The two query parameters, as the schema shows them."""
    return [
        query(
            "limit",
            OpenApiTypes.INT,
            f"page size, {default} unless given, at most {maximum}",
        ),
        query(
            "offset", OpenApiTypes.INT, "how many to skip (the list's order is stable)"
        ),
    ]


def id_cursors(params) -> tuple[int | None, int | None]:
    """Read ``since`` and ``before`` (ids) for a list paged by id; at most one."""
    since = query_int(params.get("since"), "since", default=None, low=0, high=ID_MAX)
    before = query_int(params.get("before"), "before", default=None, low=1, high=ID_MAX)
    if since is not None and before is not None:
        raise PayloadError("since and before page opposite ways: give one")
    return since, before
