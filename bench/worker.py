"""What runs inside one system's worker process: the workloads, timed and counted."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.engine import URL

from bench.floor import beside_floor
from bench.server import fresh_database
from bench.systems import SYSTEMS, System

_system: System | None = None


@dataclass(frozen=True)
class Sizes:
    """How much work one run does."""

    objects: int
    updates: int
    batch: int
    reads: int
    history_rows: int
    deep_versions: int


def start(system_name: str) -> None:
    """Process initializer: define the system's model once for the worker's lifetime."""
    global _system
    _system = SYSTEMS[system_name]()


def _current() -> System:
    assert _system is not None, "start() has not run in this process"
    return _system


class StatementCounter:
    """Counts the statements an engine sends to the server (an executemany counts once)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


def _app_for(url: URL, system: System) -> Flask:
    app = Flask(f"bench-{system.name}")
    app.config["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
    system.db.init_app(app)
    return app


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start_at in range(0, len(ids), size):
        yield ids[start_at : start_at + size]


def hold_autovacuum(engine: Any) -> None:
    """Switch autovacuum off for the tables of a benchmark database.

    Whether its workers wake up during a one-second workload is chance, and the system
    that writes more tables gives it more chances; :func:`settle` does the same work
    between the workloads instead, for every system alike.
    """
    with engine.begin() as connection:
        tables = connection.execute(
            text(
                "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        ).scalars()
        for table in list(tables):
            connection.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")


def settle(engine: Any) -> None:
    """Let the server catch up before a timed workload: vacuum and analyze the tables,
    and write out the dirty pages, so that maintenance caused by the previous step does
    not land in the next step's time (``CHECKPOINT`` is skipped if the user may not)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
        may_checkpoint = connection.exec_driver_sql(
            "SELECT rolsuper OR CASE WHEN to_regrole('pg_checkpoint') IS NULL THEN false "
            "ELSE pg_has_role('pg_checkpoint', 'MEMBER') END "
            "FROM pg_roles WHERE rolname = current_user"
        ).scalar()
        if may_checkpoint:
            connection.exec_driver_sql("CHECKPOINT")


def _timed(work: Callable[[], int], counter: StatementCounter) -> dict[str, float]:
    """Run ``work`` (which returns its number of commits) and measure it, once the server
    has settled."""
    settle(counter.engine)
    before = counter.count
    started = time.perf_counter()
    commits = work()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "statements_per_commit": (counter.count - before) / commits}


def _new_article(n: int, system: System) -> Any:
    return system.Article(
        title=f"article {n}",
        body="x" * 100,
        score=n,
        published_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )


def _insert(system: System, first: int, count: int, batch: int) -> int:
    session = system.db.session
    for chunk in _chunks(list(range(first, first + count)), batch):
        session.add_all([_new_article(n, system) for n in chunk])
        session.commit()
    return -(-count // batch)


def _load(system: System, ids: list[int]) -> list[Any]:
    Article = system.Article
    return list(system.db.session.scalars(select(Article).where(Article.id.in_(ids))))


def _update(system: System, ids: list[int], batch: int, rounds: int) -> int:
    session = system.db.session
    for round_number in range(rounds):
        for chunk in _chunks(ids, batch):
            for article in _load(system, chunk):
                article.score += 1
                article.title = f"article {article.id} edit {round_number}"
            session.commit()
    return rounds * -(-len(ids) // batch)


def _delete(system: System, ids: list[int], batch: int) -> int:
    session = system.db.session
    for chunk in _chunks(ids, batch):
        for article in _load(system, chunk):
            session.delete(article)
        session.commit()
    return -(-len(ids) // batch)


#: Reads stop after this many seconds (but not before five calls): a peer that scans its
#: whole history per read would otherwise take hours at a million rows.
READ_BUDGET_SECONDS = 3.0


def _median_ms(calls: list[Callable[[], Any]]) -> float:
    timings: list[float] = []
    deadline = time.perf_counter() + READ_BUDGET_SECONDS
    for call in calls:
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
        if len(timings) >= 5 and started > deadline:
            break
    return statistics.median(timings)


def _read_timings(
    system: System, ids: list[int], reads: int, at: datetime, rng: random.Random
) -> dict[str, float]:
    """Median milliseconds of ``versions()`` and of an as-of read of random objects."""
    session = system.db.session
    chosen = [session.get(system.Article, rng.choice(ids)) for _ in range(reads)]
    return {
        "versions_ms": _median_ms([lambda a=a: system.versions(session, a) for a in chosen]),
        "version_at_ms": _median_ms(
            [lambda a=a: system.version_at(session, a, at) for a in chosen]
        ),
    }


def run_writes(server_url: str, sizes: Sizes, seed: int) -> dict[str, Any]:
    """W1 inserts, W2 updates, W4/W5 reads of the fresh history, W3 deletes, in one database.

    Also counts the statements of one commit of 10 objects, to show how they grow.
    """
    system = _current()
    rng = random.Random(seed)
    with fresh_database(server_url) as url:
        app = _app_for(url, system)
        with app.app_context():
            system.create_schema()
            hold_autovacuum(system.db.engine)
            counter = StatementCounter(system.db.engine)
            ids = list(range(1, sizes.objects + 1))
            result: dict[str, Any] = {
                "insert": _timed(lambda: _insert(system, 1, sizes.objects, sizes.batch), counter)
            }
            result["update"] = _timed(
                lambda: _update(system, ids, sizes.batch, sizes.updates), counter
            )
            if system.keeps_history:
                at = datetime.now(timezone.utc)
                _update(system, ids[: sizes.batch], sizes.batch, 1)
                result["fresh_reads"] = _read_timings(
                    system, ids[: sizes.batch], sizes.reads, at, rng
                )
                system.db.session.remove()
            result["delete"] = _timed(lambda: _delete(system, ids, sizes.batch), counter)
            result["small_commit_statements"] = _small_commit_statements(
                system, counter, sizes.objects + 1
            )
            system.db.session.remove()
            system.db.engine.dispose()
    return result


def _small_commit_statements(
    system: System, counter: StatementCounter, first: int
) -> dict[str, float]:
    ids = list(range(first, first + 10))
    counts = {}
    for name, work in (
        ("insert", lambda: _insert(system, first, 10, 10)),
        ("update", lambda: _update(system, ids, 10, 1)),
        ("delete", lambda: _delete(system, ids, 10)),
    ):
        before = counter.count
        work()
        counts[name] = counter.count - before
    return counts


def run_history_reads(server_url: str, sizes: Sizes, repetitions: int, seed: int) -> dict[str, Any]:
    """W6: the reads of W4 and W5 after the history has grown to ``sizes.history_rows``.

    A batch of real objects is written through the ORM (each inserted, then updated five
    times), one object gets ``sizes.deep_versions`` versions, and the rest of the rows
    are made-up objects added in SQL.
    """
    system = _current()
    rng = random.Random(seed)
    with fresh_database(server_url) as url:
        app = _app_for(url, system)
        with app.app_context():
            system.create_schema()
            session = system.db.session
            objects = sizes.batch * 5
            ids = list(range(1, objects + 1))
            _insert(system, 1, objects, sizes.batch)
            _update(system, ids, sizes.batch, 2)
            at = datetime.now(timezone.utc)
            _update(system, ids, sizes.batch, 3)
            deep = _new_article(0, system)
            session.add(deep)
            session.commit()
            deep_id = deep.id
            deep_middle = None
            for version in range(1, sizes.deep_versions):
                deep.score = version
                session.commit()
                if version == sizes.deep_versions // 2:
                    deep_middle = datetime.now(timezone.utc)
            grown = max(sizes.history_rows - system.history_rows(session), 0)
            system.grow_history(session, grown, first_id=10_000_000)
            session.commit()
            session.execute(text("ANALYZE"))
            session.commit()
            total_rows = system.history_rows(session)
            runs = [_read_timings(system, ids, sizes.reads, at, rng) for _ in range(repetitions)]
            deep_article = session.get(system.Article, deep_id)
            deep_runs = [
                _median_ms(
                    [lambda: system.version_at(session, deep_article, deep_middle)] * sizes.reads
                )
                for _ in range(repetitions)
            ]
            # The floor of each read: its SQL run directly on the driver's connection.
            sample = session.get(system.Article, rng.choice(ids))
            reads: dict[str, Callable[[], Any]] = {
                "versions_raw_ms": lambda: system.versions(session, sample),
                "version_at_raw_ms": lambda: system.version_at(session, sample, at),
                "deep_version_at_raw_ms": lambda: system.version_at(
                    session, deep_article, deep_middle
                ),
            }
            floors = {
                name: beside_floor(system.db.engine, call, sizes.reads)["raw_driver_ms"]
                for name, call in reads.items()
            }
            session.remove()
            system.db.engine.dispose()
    return {
        **floors,
        "history_rows": total_rows,
        "versions_ms": statistics.median(run["versions_ms"] for run in runs),
        "version_at_ms": statistics.median(run["version_at_ms"] for run in runs),
        "deep_version_at_ms": statistics.median(deep_runs),
        "deep_versions": sizes.deep_versions,
    }
