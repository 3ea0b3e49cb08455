"""Retention rules, ``prune`` and ``flask chrononaut prune``."""

from __future__ import annotations

import textwrap
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import String, create_engine, func, select, text, update
from sqlalchemy.orm import Mapped, mapped_column

from chrononaut import Retention, Versioned, acting_as
from chrononaut.exceptions import ChrononautException, InvalidArgumentError, ProtectedHistoryError
from chrononaut.history.lives import operation_of
from chrononaut.history.reads import object_history
from chrononaut.history.serialization import UTC
from chrononaut.interfaces.timeline import activity_feed, object_timeline
from chrononaut.maintenance.retention import PRUNE_TABLE_NAME, prune
from chrononaut.unsafe import suppress_versioning
from tests.viewer_data import cli_runner

DAY = timedelta(days=1)


def declare(model, retention):
    """Give ``model`` (made fresh for each test) a retention rule."""
    model.__chrononaut_retention__ = retention


def todo_with_versions(session, models, count):
    todo = models.Todo(title="v0")
    session.add(todo)
    session.commit()
    for number in range(1, count):
        todo.title = f"v{number}"
        session.commit()
    return todo


def date_rows(db, session, todo, ages):
    """Move the rows of ``todo``, oldest first, to ``ages`` days ago."""
    activity = db.activity_cls
    now = datetime.now(UTC)
    ids = [snapshot.chrononaut_activity_id for snapshot in todo.versions()]
    with suppress_versioning(allow_deleting_history=True):
        for row_id, age in zip(ids, ages, strict=True):
            session.execute(
                update(activity).where(activity.id == row_id).values(changed=now - age * DAY)
            )
        session.commit()
    session.expire_all()


def row_count(db, session, table_name="todo"):
    activity = db.activity_cls
    return session.scalar(
        select(func.count()).select_from(activity).where(activity.table_name == table_name)
    )


def titles(todo):
    return [snapshot.title for snapshot in todo.versions()]


def test_a_days_rule_keeps_the_state_at_the_cutoff(db, session, models):
    declare(models.Todo, Retention(days=50))
    todo = todo_with_versions(session, models, 6)
    date_rows(db, session, todo, [100, 80, 60, 40, 20, 0])
    moments = [datetime.now(UTC) - age * DAY for age in range(50, -1, -5)]
    expected = [todo.version_at(moment).title for moment in moments]

    report = prune(db)

    assert [(entry.model, entry.rows) for entry in report.models] == [(models.Todo, 2)]
    assert report.models[0].cutoff == report.started - 50 * DAY
    session.expire_all()
    assert titles(todo) == ["v2", "v3", "v4", "v5"]
    assert [todo.version_at(moment).title for moment in moments] == expected
    assert todo.version_at(report.started - 50 * DAY).title == "v2"


def test_a_versions_rule_keeps_the_newest_rows_of_each_object(db, session, models):
    declare(models.Todo, Retention(versions=2))
    todos = [todo_with_versions(session, models, count) for count in (1, 2, 5)]
    assert prune(db).rows == 3
    session.expire_all()
    assert [titles(todo) for todo in todos] == [["v0"], ["v0", "v1"], ["v3", "v4"]]


def test_rules_together_remove_only_what_neither_keeps(db, session, models):
    declare(models.Todo, Retention(versions=3, days=30))
    recent = todo_with_versions(session, models, 5)
    date_rows(db, session, recent, [10, 8, 6, 4, 2])
    old = todo_with_versions(session, models, 5)
    date_rows(db, session, old, [100, 90, 80, 70, 60])
    assert prune(db).rows == 2
    session.expire_all()
    assert titles(recent) == ["v0", "v1", "v2", "v3", "v4"]
    assert titles(old) == ["v2", "v3", "v4"]


def test_dated_reads_stay_exact_from_the_documented_time(app, db, session, models):
    @settings(max_examples=25, deadline=None)
    @given(
        ages=st.lists(st.integers(0, 400), min_size=1, max_size=8).map(
            lambda ages: sorted(ages, reverse=True)
        ),
        versions=st.none() | st.integers(1, 4),
        days=st.none() | st.integers(1, 300),
        keep_deletes=st.booleans(),
    )
    def exact(ages, versions, days, keep_deletes):
        if versions is None and days is None:
            days = 100
        retention = Retention(versions=versions, days=days, keep_deletes=keep_deletes)
        declare(models.Todo, retention)
        todo = todo_with_versions(session, models, len(ages))
        date_rows(db, session, todo, ages)
        before = todo.versions()
        probes = [s.chrononaut_changed + delta for s in before for delta in (-DAY, 0 * DAY, DAY)]
        expected = {moment: todo.version_at(moment) for moment in probes}

        report = prune(db)

        session.expire_all()
        kept = todo.versions()
        exact_since = []
        if days is not None:
            exact_since.append(report.models[0].cutoff)
        if versions is not None and len(before) >= versions:
            exact_since.append(before[-versions].chrononaut_changed)
        since = min(exact_since, default=before[0].chrononaut_changed)
        for moment in probes:
            if moment >= since:
                assert todo.version_at(moment) == expected[moment]
        # The rows removed are the oldest ones.
        assert kept == before[len(before) - len(kept) :]

    exact()


def test_deletes_are_kept_and_still_read_as_deletes(db, session, models):
    declare(models.Todo, Retention(versions=1, keep_deletes=True))
    todo = todo_with_versions(session, models, 3)
    todo_id = todo.id
    session.delete(todo)
    session.commit()
    again = models.Todo(id=todo_id, title="second life")
    session.add(again)
    session.commit()
    again.title = "second life, changed"
    session.commit()
    key = {"id": todo_id}
    # Rows written before operations were recorded: the delete is read from the rows.
    with suppress_versioning(allow_deleting_history=True):
        session.execute(update(db.activity_cls).values(operation=None))
        session.commit()

    def operations():
        history = object_history(session, models.Todo, key)
        following = [*history[1:], None]
        return [
            (snapshot.chrononaut_data["title"], operation_of(snapshot, after, live=True))
            for snapshot, after in zip(history, following, strict=True)
        ]

    assert operations() == [
        ("v0", "insert"),
        ("v1", "update"),
        ("v2", "update"),
        ("v2", "delete"),
        ("second life", "insert"),
        ("second life, changed", "update"),
    ]
    assert prune(db).rows == 3
    assert operations() == [
        ("v2", "delete"),
        ("second life", "insert"),
        ("second life, changed", "update"),
    ]


def test_recorded_deletes_are_kept_on_their_own(db, session, models):
    declare(models.Todo, Retention(versions=1, keep_deletes=True))
    todo = todo_with_versions(session, models, 2)
    todo_id = todo.id
    session.delete(todo)
    session.commit()
    again = models.Todo(id=todo_id, title="second life")
    session.add(again)
    session.commit()
    again.title = "second life, changed"
    session.commit()
    assert prune(db).rows == 3
    history = object_history(session, models.Todo, {"id": todo_id})
    assert [(s.chrononaut_operation, s.chrononaut_version) for s in history] == [
        ("delete", 2),
        ("update", 1),
    ]


def test_models_without_a_rule_keep_everything(db, session, models):
    declare(models.Todo, Retention(versions=1))
    todo_with_versions(session, models, 3)
    user = models.User(name="ada", password="x")
    session.add(user)
    session.commit()
    user.name = "ada l."
    session.commit()
    report = prune(db)
    assert [entry.model for entry in report.models] == [models.Todo]
    assert (row_count(db, session), row_count(db, session, "appuser")) == (1, 2)


def test_a_dry_run_counts_and_changes_nothing(db, session, models):
    declare(models.Todo, Retention(versions=1))
    todo_with_versions(session, models, 4)
    report = prune(db, dry_run=True, batch_size=2)
    assert (report.dry_run, report.rows) == (True, 3)
    assert row_count(db, session) == 4
    assert row_count(db, session, PRUNE_TABLE_NAME) == 0


def test_the_run_is_recorded_and_reads_past_it(app, db, session, models):
    declare(models.Todo, Retention(days=30))
    todo = todo_with_versions(session, models, 3)
    date_rows(db, session, todo, [90, 60, 0])
    with acting_as("janitor", rationale="monthly"):
        report = prune(db)
    activity = db.activity_cls
    record = session.scalars(select(activity).where(activity.table_name == PRUNE_TABLE_NAME)).one()
    assert (record.key, record.version, record.operation) == (
        {"run": report.started.isoformat()},
        0,
        "insert",
    )
    assert record.data == {
        "models": {
            "Todo": {
                "table_name": "todo",
                "rule": {"versions": None, "days": 30, "keep_deletes": False},
                "cutoff": (report.started - 30 * DAY).isoformat(),
                "rows": 1,
            }
        },
        "version": 0,
    }
    assert (record.user_info, record.extra_info) == (
        {"user_id": "janitor", "remote_addr": None},
        {"rationale": "monthly"},
    )
    # Object reads never see it; the feed shows it as a row of no model.
    assert [entry.version for entry in object_timeline(session, models.Todo, {"id": todo.id})] == [
        1,
        2,
    ]
    newest = activity_feed(session, activity, limit=1)[0]
    assert (newest.model, newest.kind, newest.user_id) == (None, "created", "janitor")
    # Pruning again removes nothing more and never touches the record.
    assert prune(db).rows == 0
    assert row_count(db, session, PRUNE_TABLE_NAME) == 2


def test_each_batch_is_committed_on_its_own(db, session, models, database_url):
    declare(models.Todo, Retention(versions=1))
    todo_with_versions(session, models, 4)
    other = create_engine(database_url)
    seen = []

    def count_from_elsewhere(entry, rows):
        with other.connect() as connection:
            seen.append((rows, connection.scalar(text("SELECT count(*) FROM chrononaut_activity"))))

    try:
        prune(db, batch_size=1, progress=count_from_elsewhere)
    finally:
        other.dispose()
    assert seen == [(1, 3), (1, 2), (1, 1)]


def test_the_guard_still_refuses_everyone_else(db, session, models):
    declare(models.Todo, Retention(versions=1))
    todo_with_versions(session, models, 3)
    prune(db)
    activity = db.activity_cls
    with pytest.raises(ProtectedHistoryError):
        session.execute(activity.__table__.delete())
    session.rollback()
    with pytest.raises(ProtectedHistoryError):
        session.delete(session.scalars(select(activity)).first())
        session.flush()
    session.rollback()


def test_a_prune_never_removes_a_version_recorded_while_it_runs(app, db, session, models):
    declare(models.Todo, Retention(versions=1))
    todo = todo_with_versions(session, models, 3)
    todo_id = todo.id
    flushed, pruned, committed = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def writer():
        # A transaction of its own that records a version and stays open over the prune.
        with app.app_context():
            try:
                mine = db.session.get(models.Todo, todo_id)
                mine.title = "written meanwhile"
                db.session.flush()
                flushed.set()
                assert pruned.wait(timeout=60)
                db.session.commit()
                committed.set()
            except BaseException as error:
                errors.append(error)
                flushed.set()
            finally:
                db.session.remove()

    thread = threading.Thread(target=writer)
    thread.start()
    assert flushed.wait(timeout=60)
    try:
        report = prune(db)
    finally:
        pruned.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and not errors and committed.is_set()
    assert report.rows == 2
    session.expire_all()
    assert titles(todo) == ["v2", "written meanwhile"]


def test_versions_committed_between_batches_are_kept(app, db, session, models):
    declare(models.Todo, Retention(versions=2))
    todos = [todo_with_versions(session, models, 4) for _ in range(3)]
    ids = [todo.id for todo in todos]
    errors = []

    def write_once(entry, rows):
        # Another connection commits a version while the prune is between batches.
        if len(written) < len(ids):
            thread = threading.Thread(target=write, args=(ids[len(written)],))
            thread.start()
            thread.join(timeout=60)
            assert not thread.is_alive()

    written = []

    def write(todo_id):
        with app.app_context():
            try:
                mine = db.session.get(models.Todo, todo_id)
                mine.title = f"meanwhile {todo_id}"
                db.session.commit()
            except BaseException as error:
                errors.append(error)
            finally:
                written.append(todo_id)
                db.session.remove()

    prune(db, batch_size=1, progress=write_once)
    assert not errors and written == ids
    session.expire_all()
    for todo in todos:
        assert titles(todo)[-1] == f"meanwhile {todo.id}"
        assert len(titles(todo)) == 2


@pytest.mark.parametrize("style", ["classic", "typed"])
def test_declarations_are_checked_when_the_model_is_mapped(db, style):
    def key_column():
        if style == "classic":
            return db.Column(db.Integer, primary_key=True)
        return mapped_column(primary_key=True)

    with pytest.raises(ChrononautException, match=r"Loose.__chrononaut_retention__ must be"):

        class Loose(db.Model, Versioned):
            __tablename__ = "loose"
            __chrononaut_retention__ = {"days": 30}
            id: Mapped[int] = key_column()

    class Base(db.Model, Versioned):
        __tablename__ = "base"
        __chrononaut_retention__ = Retention(days=30)
        id: Mapped[int] = key_column()
        kind: Mapped[str] = mapped_column(String(10))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "base"}

    class Same(Base):
        __mapper_args__ = {"polymorphic_identity": "same"}

    assert Same.__chrononaut_retention__ == Retention(days=30)
    with pytest.raises(ChrononautException, match="Single shares the table of Base"):

        class Single(Base):
            __chrononaut_retention__ = Retention(days=5)
            __mapper_args__ = {"polymorphic_identity": "single"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "keeps everything without `versions` or `days`"),
        ({"versions": 0}, r"Retention\(versions=...\) must be a positive integer, not 0"),
        ({"days": 1.5}, r"Retention\(days=...\) must be a positive integer, not 1.5"),
        ({"days": True}, "must be a positive integer, not True"),
        ({"days": 3, "keep_deletes": "yes"}, "keep_deletes=...\\) must be True or False"),
    ],
)
def test_bad_rules_are_refused(arguments, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Retention(**arguments)


def test_prune_refuses_a_bad_batch_size(db, session, models):
    with pytest.raises(InvalidArgumentError, match="batch_size must be a positive integer"):
        prune(db, batch_size=0)


def test_the_prune_command(app, db, session, models):
    declare(models.Todo, Retention(versions=1, keep_deletes=True))
    todo_with_versions(session, models, 3)
    run = cli_runner(app)
    dry = run("prune", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Dry run: 2 rows would be removed." in dry.output
    assert row_count(db, session) == 3
    done = run("prune", "--batch-size", "1", "--actor", "ops")
    assert done.exit_code == 0, done.output
    table_row = [line for line in done.output.splitlines() if "Todo" in line]
    assert [cell.strip() for cell in table_row[0].split("│")[1:-1]] == [
        "Todo",
        "newest 1 versions, deletes",
        "",
        "2",
    ]
    assert "2 rows removed; the run is recorded in the activity table." in done.output
    assert row_count(db, session) == 1
    record = session.execute(
        text("SELECT user_info FROM chrononaut_activity WHERE table_name = :t"),
        {"t": PRUNE_TABLE_NAME},
    ).scalar()
    assert record["user_id"] == "ops"


def test_the_prune_command_without_rules(app, db, session, models):
    result = cli_runner(app)("prune")
    assert result.exit_code == 0
    assert result.output == "No model declares a retention rule: nothing to prune.\n"


def test_writers_never_wait_for_a_batch_in_progress(app, db, session, models, database_url):
    declare(models.Todo, Retention(versions=1))
    todo = todo_with_versions(session, models, 3)
    oldest = todo.versions()[0].chrononaut_activity_id
    other = create_engine(database_url)
    blocker, watcher = other.connect(), other.connect()
    outcome = {}

    def run(name, work):
        with app.app_context():
            try:
                outcome[name] = work()
            except BaseException as error:
                outcome[name] = error
            finally:
                db.session.remove()

    def write():
        mine = db.session.get(models.Todo, todo.id)
        mine.title = "written during the batch"
        db.session.commit()
        return "committed"

    try:
        # Holding one row the batch deletes keeps the batch's transaction open.
        blocker.execute(
            text("SELECT id FROM chrononaut_activity WHERE id = :id FOR UPDATE"), {"id": oldest}
        )
        pruning = threading.Thread(target=run, args=("prune", lambda: prune(db).rows))
        pruning.start()
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM chrononaut_activity%'"
        )
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while not watcher.scalar(waiting):
            assert datetime.now(UTC) < deadline, "the prune never reached its DELETE"
            watcher.rollback()
        writing = threading.Thread(target=run, args=("write", write))
        writing.start()
        writing.join(timeout=60)
        assert outcome.get("write") == "committed"
    finally:
        blocker.rollback()
        pruning.join(timeout=60)
        blocker.close()
        watcher.close()
        other.dispose()
    assert outcome["prune"] == 2
    session.expire_all()
    assert titles(todo) == ["v2", "written during the batch"]


def test_changes_made_by_the_progress_callback_are_recorded(db, session, models):
    declare(models.Todo, Retention(versions=1))
    todos = [todo_with_versions(session, models, 2) for _ in range(2)]

    def edit(entry, rows):
        todos[0].title = f"edited after {entry.rows}"
        session.commit()

    assert prune(db, batch_size=1, progress=edit).rows == 3
    session.expire_all()
    # Each edit was recorded, and the prune, which considers only the rows there when
    # it started, removed none of them: it ends although each edit makes the row
    # before it removable.
    assert [(s.chrononaut_version, s.title) for s in todos[0].versions()] == [
        (2, "edited after 1"),
        (3, "edited after 2"),
        (4, "edited after 3"),
    ]
    assert titles(todos[1]) == ["v1"]


def test_inherited_rules_apply_to_each_table_of_a_hierarchy(db, session, models):
    declare(models.Animal, Retention(versions=1))
    pets = [models.Dog(name="rex", breed="collie"), models.Cat(name="tom", indoor=True)]
    session.add_all(pets)
    session.commit()
    for number in (1, 2):
        for pet in pets:
            pet.name = f"{pet.name} {number}"
        session.commit()
    report = prune(db)
    assert [(entry.model, entry.rows) for entry in report.models] == [
        (models.Animal, 2),
        (models.Dog, 2),
    ]
    session.expire_all()
    assert [[s.name for s in pet.versions()] for pet in pets] == [["rex 1 2"], ["tom 1 2"]]


def test_the_documented_declaration(db):
    page = (Path(__file__).parent.parent / "docs" / "retention.rst").read_text()
    lines = page.split(".. code-block:: python\n\n", 1)[1].splitlines()
    end = next(n for n, line in enumerate(lines) if line and not line.startswith(" "))
    namespace = {"db": db}
    exec(textwrap.dedent("\n".join(lines[:end])), namespace)
    assert namespace["Order"].__chrononaut_retention__ == Retention(
        versions=5, days=90, keep_deletes=True
    )


def test_an_activity_table_without_operations_is_refused_with_the_migration(db, session, models):
    declare(models.Todo, Retention(versions=1))
    todo_with_versions(session, models, 3)
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()
    with pytest.raises(ChrononautException, match=r"no operation or transaction_id column"):
        prune(db)
    assert row_count(db, session) == 3
