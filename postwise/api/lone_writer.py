"""PostgreSQL driver connections used on the event loop for lone tracking batches.

Storage machinery that the ``/v1`` route calls but does not hold. It lives at the edge,
not in ``storage/``, because it imports psycopg itself, and the domain (``storage/``
included) never imports a database driver (tests/test_architecture.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from postwise.tracking import ingest


class _DeadConnection(Exception):
    """The server closed the connection: the batch may be sent again on a fresh one."""


class LoneWriter:
    """PostgreSQL: lone batches (``ingest.alone``) as their ONE statement in autocommit on
    driver connections used on the event loop. One statement is atomic and durably
    committed before it answers, so the batch costs one round trip, and no thread hand-off
    (which held the GIL about as long as the JSON parse; docs/tracking.md). Connections are
    opened when needed, kept idle up to ``size`` and closed by the app's lifespan. One found
    dead (a restarted server, a terminated backend) is retried once on a fresh connection,
    the idle ones being closed too: they are likely as dead."""

    def __init__(self, url: str, size: int) -> None:
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self.loop = asyncio.get_running_loop()
        self.attempts = 0  # statements sent, a retry included
        self.opened = 0  # connections opened

    async def insert(self, params: dict[str, Any]) -> int:
        async with self._slots:
            try:
                return await self._once(params)
            except _DeadConnection:
                await self.close()
            return await self._once(params)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    def abandon(self) -> None:
        """Close the idle connections without their loop (gone): the socket only."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.pgconn.finish()

    async def _once(self, params: dict[str, Any]) -> int:
        if self._idle:
            connection = self._idle.pop()
        else:
            connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            self.opened += 1
        self.attempts += 1
        try:
            cursor = await connection.execute(ingest.PG_INSERT_DBAPI, params)
            [(count, *_)] = await cursor.fetchall()
        except psycopg.OperationalError as exc:
            await connection.close()
            if connection.broken or connection.closed:
                raise _DeadConnection from exc
            raise
        except BaseException:
            await connection.close()
            raise
        self._idle.append(connection)
        return int(count)
