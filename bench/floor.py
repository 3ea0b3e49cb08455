"""A read's time beside its floor: the same SQL executed directly on a DBAPI connection."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event


def _captured(engine: Any, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements and parameters ``call`` sends through ``engine``."""
    sent: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return sent


def beside_floor(engine: Any, call: Callable[[], Any], calls: int) -> dict[str, float]:
    """Median milliseconds of ``call`` and of the SQL it sends run on a raw DBAPI
    connection of ``engine``, the two alternating so that both meet the same moments
    of a busy machine."""
    sent = _captured(engine, call)
    raw = engine.raw_connection()

    def floor() -> None:
        cursor = raw.cursor()
        for statement, parameters in sent:
            cursor.execute(statement, parameters)
            cursor.fetchall()
        cursor.close()

    ours: list[float] = []
    bare: list[float] = []
    try:
        for _ in range(calls):
            for work, timings in ((call, ours), (floor, bare)):
                started = time.perf_counter()
                work()
                timings.append((time.perf_counter() - started) * 1000)
    finally:
        raw.close()
    return {
        "ms": statistics.median(ours),
        "raw_driver_ms": statistics.median(bare),
        "statements": len(sent),
    }
