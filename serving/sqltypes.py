"""Column types the service's stores share."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Dialect, TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A moment stored as UTC on every backend and read back aware (UTC).

    SQLite keeps no time zone: without this, a naive value read back is taken as local
    time, and the hash of an untouched record changes with ``TZ``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Aware values in UTC; SQLite gets them naive (it would drop the zone anyway)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit times must carry a time zone")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Always aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
