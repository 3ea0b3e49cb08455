"""The safety net: database triggers record the writes that bypass the session, in
the session's snapshot format, each change exactly once."""

from __future__ import annotations

import enum
import importlib
import math
import shutil
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    Text,
    Time,
    UnicodeText,
    Uuid,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError

from chrononaut import Versioned, VersionedSQLAlchemy, acting_as
from chrononaut.capture.trigger_sql import TRIGGERS
from chrononaut.capture.triggers import send_change_context
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.unsafe import suppress_versioning
from tests.models import Priority
from tests.test_alembic import APP_MODULE, SNIPPETS, env_path, versions
from tests.test_types import Color, Size

NETTED = ("Todo", "User", "Country", "Gadget")
DATABASE = {"captured_by": "database", "database_user": "postgres"}
NOBODY = {"user_id": None, "remote_addr": None}
NET_TRIGGERS = sorted(TRIGGERS)


@pytest.fixture
def net(app: Any, db: Any, models: Any) -> Any:
    """The safety net on the tables of :data:`NETTED`."""
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.install_safety_net(*(getattr(models, name) for name in NETTED))
    return models


def activity(db: Any, table: str) -> list[Any]:
    """Every activity row of ``table``, in the order written."""
    row_class = db.activity_cls
    return list(
        db.session.scalars(
            select(row_class).where(row_class.table_name == table).order_by(row_class.id)
        )
    )


def summary(rows: list[Any]) -> list[tuple[str | None, int, dict[str, Any]]]:
    return [(row.operation, row.version, row.data) for row in rows]


def test_sql_text_writes_are_recorded_with_versions_and_operations(db, net, session):
    session.execute(
        text("INSERT INTO todo (id, title, secret, starred) VALUES (7, 'a', 's', false)")
    )
    session.execute(text("UPDATE todo SET title = 'b' WHERE id = 7"))
    session.commit()
    todo = session.get(net.Todo, 7)
    assert todo.version == 1
    session.execute(text("DELETE FROM todo WHERE id = 7"))
    session.commit()

    rows = activity(db, "todo")
    empty = {"text": None, "done": None, "priority": None, "due_at": None}
    assert summary(rows) == [
        ("insert", 0, {"id": 7, "title": "a", **empty, "version": 0}),
        ("update", 1, {"id": 7, "title": "b", **empty, "version": 1}),
        ("delete", 2, {"id": 7, "title": "b", **empty, "version": 2}),
    ]
    assert [row.key for row in rows] == [{"id": 7}] * 3
    assert [row.user_info for row in rows] == [{**NOBODY, **DATABASE}] * 3
    # The secret was set by the insert: named, never stored.
    assert [row.extra_info for row in rows] == [{"hidden_cols_changed": ["secret"]}, {}, {}]
    assert len({row.transaction_id for row in rows}) == 2


def test_orm_writes_are_recorded_once_by_the_session(db, net, session):
    todo = net.Todo(title="a", secret="s")
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()
    session.delete(todo)
    session.commit()

    rows = activity(db, "todo")
    assert [(row.operation, row.version) for row in rows] == [
        ("insert", 0),
        ("update", 1),
        ("delete", 2),
    ]
    assert all("captured_by" not in row.user_info for row in rows)


def test_orm_flush_and_sql_text_in_one_transaction_are_recorded_once_each(db, net, session):
    todo = net.Todo(title="orm")
    session.add(todo)
    session.flush()
    session.execute(text("UPDATE todo SET title = 'sql' WHERE id = :id"), {"id": todo.id})
    session.refresh(todo)
    todo.title = "orm again"
    session.flush()
    session.connection().execute(
        text("UPDATE todo SET title = 'connection' WHERE id = :id"), {"id": todo.id}
    )
    session.commit()

    rows = activity(db, "todo")
    assert [(row.version, row.data["title"], "captured_by" in row.user_info) for row in rows] == [
        (0, "orm", False),
        (1, "sql", True),
        (2, "orm again", False),
        (3, "connection", True),
    ]
    assert session.get(net.Todo, todo.id).version == 3
    assert len({row.transaction_id for row in rows}) == 1

    # A row inserted by SQL, then changed through the session in the same transaction.
    session.execute(text("INSERT INTO todo (id, title) VALUES (99, 'sql')"))
    inserted = session.get(net.Todo, 99)
    inserted.title = "orm"
    session.commit()
    assert [
        (row.operation, row.version, "captured_by" in row.user_info) for row in activity(db, "todo")
    ][4:] == [("insert", 0, True), ("update", 1, False)]


def test_a_rolled_back_transaction_records_nothing(db, net, session):
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    session.rollback()
    assert activity(db, "todo") == []


def test_change_context_of_the_application_is_recorded(db, net, session):
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    with acting_as("billing-job", rationale="fix titles", ticket="OPS-1"):
        session.execute(text("UPDATE todo SET title = 'b' WHERE id = 1"))
    session.commit()

    rows = activity(db, "todo")
    assert [row.user_info for row in rows] == [
        {**NOBODY, **DATABASE},
        {"user_id": "billing-job", "remote_addr": None, **DATABASE},
    ]
    assert [row.extra_info for row in rows] == [{}, {"rationale": "fix titles", "ticket": "OPS-1"}]


def test_a_separate_connection_is_recorded(db, net, session):
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    with acting_as("psql-like", rationale="by hand"), db.engine.begin() as connection:
        send_change_context(connection)
        connection.execute(text("UPDATE todo SET title = 'b' WHERE id = 1"))

    rows = activity(db, "todo")
    assert [(row.operation, row.user_info, row.extra_info) for row in rows] == [
        ("insert", {**NOBODY, **DATABASE}, {}),
        (
            "update",
            {"user_id": "psql-like", "remote_addr": None, **DATABASE},
            {"rationale": "by hand"},
        ),
    ]


def test_hidden_and_untracked_columns_through_sql_text(db, net, session):
    session.add(net.Todo(id=1, title="a", secret="first", starred=False))
    session.commit()
    session.execute(text("UPDATE todo SET starred = true WHERE id = 1"))
    session.execute(text("UPDATE todo SET title = title WHERE id = 1"))
    session.commit()
    assert len(activity(db, "todo")) == 1
    assert session.get(net.Todo, 1).version == 0

    session.execute(text("UPDATE todo SET secret = 'second' WHERE id = 1"))
    session.commit()
    rows = activity(db, "todo")
    assert (rows[-1].version, rows[-1].extra_info) == (1, {"hidden_cols_changed": ["secret"]})
    assert "secret" not in rows[-1].data
    stored = db.session.execute(
        text("SELECT data::text, extra_info::text FROM chrononaut_activity")
    )
    assert not any("first" in part or "second" in part for row in stored for part in row)


def test_suppressed_versioning_records_nothing_through_sql_text(db, net, session):
    with suppress_versioning():
        session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
        session.add(net.Todo(id=2, title="b"))
        session.commit()
    session.execute(text("UPDATE todo SET title = 'c' WHERE id = 1"))
    session.commit()
    assert summary(activity(db, "todo"))[0][:2] == ("update", 1)
    assert len(activity(db, "todo")) == 1


def test_attribute_and_column_names_differ(db, net, session):
    session.execute(text("INSERT INTO gadget (id, \"DisplayName\") VALUES (3, 'lamp')"))
    session.execute(text("INSERT INTO country (code, name) VALUES ('NL', 'Netherlands')"))
    session.commit()
    gadget = session.get(net.Gadget, 3)
    assert [snapshot.display_name for snapshot in gadget.versions()] == ["lamp"]
    assert activity(db, "gadget")[0].key == {"gadget_id": 3}
    assert activity(db, "country")[0].key == {"code": "NL"}


def test_models_not_opted_in_are_untouched(db, net, session):
    session.execute(text("INSERT INTO author (id, name) VALUES (1, 'a')"))
    session.commit()
    assert activity(db, "author") == []
    assert triggers_of(session, "author") == []
    assert triggers_of(session, "todo") == NET_TRIGGERS


def triggers_of(session: Any, table: str) -> list[str]:
    return list(
        session.scalars(
            text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table) "
                "AND NOT tgisinternal ORDER BY tgname"
            ),
            {"table": table},
        )
    )


def test_install_remove_and_reinstall_are_idempotent(app, db, models, session):
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.install_safety_net(models.Todo)
    db.install_safety_net(models.Todo)
    assert triggers_of(session, "todo") == NET_TRIGGERS
    session.commit()
    db.remove_safety_net(models.Todo)
    db.remove_safety_net(models.Todo)
    assert triggers_of(session, "todo") == []
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'unseen')"))
    session.commit()
    assert activity(db, "todo") == []
    db.install_safety_net(models.Todo)
    session.execute(text("UPDATE todo SET title = 'seen' WHERE id = 1"))
    session.commit()
    assert summary(activity(db, "todo"))[0][:2] == ("update", 1)


def test_install_refuses_what_it_cannot_record(app, db, models):
    with pytest.raises(ChrononautException, match="CHRONONAUT_SAFETY_NET"):
        db.install_safety_net(models.Todo)
    app.config["CHRONONAUT_SAFETY_NET"] = True
    with pytest.raises(ChrononautException, match="inheritance"):
        db.install_safety_net(models.Dog)
    with pytest.raises(InvalidArgumentError, match="Versioned models"):
        db.install_safety_net(models.Note)
    # Without arguments: every versioned model, and Animal and its kinds are among them.
    with pytest.raises(ChrononautException, match="inheritance"):
        db.install_safety_net()
    assert triggers_of(db.session, "todo") == []


def test_enum_values_are_stored_like_the_session_stores_them(db, net, session):
    session.execute(text("INSERT INTO todo (id, priority) VALUES (1, 'HIGH')"))
    session.commit()
    todo = session.get(net.Todo, 1)
    assert activity(db, "todo")[0].data["priority"] == "Priority.HIGH"
    assert todo.versions()[0].typed_data()["priority"] is Priority.HIGH


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@pytest.fixture
def Sample(app, db):
    """A model with a column of each type the safety net records, netted."""

    class Sample(db.Model, Versioned):
        __tablename__ = "sample"
        id = Column(Integer, primary_key=True)
        amount = Column(Numeric(14, 4))
        ratio = Column(Float)
        big = Column(BigInteger)
        flag = Column(Boolean)
        day = Column(Date)
        clock = Column(Time)
        uid = Column(Uuid)
        uid_text = Column(Uuid(as_uuid=False))
        color = Column(Enum(Color))
        color_text = Column(Enum(Color, native_enum=False))
        level = Column(Enum(Level, values_callable=lambda levels: [m.value for m in levels]))
        size = Column(Enum(Size))
        label = Column(Enum("x", "y", name="label"))
        blob = Column(LargeBinary)
        tags = Column(ARRAY(Text))
        grid = Column(ARRAY(Integer, dimensions=2))
        doc = Column(JSON)
        docb = Column(JSONB)
        naive = Column(DateTime)
        aware = Column(DateTime(timezone=True))
        body = Column(UnicodeText)

    db.create_all()
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.install_safety_net()  # every versioned model: Sample alone here
    return Sample


# The escape mark U+FDD0 is left out: the triggers refuse it (tested below).
SAFE_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufdd0"), max_size=20
)
SAFE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(-1e12, 1e12, allow_nan=False).map(lambda f: round(f, 6))
    | SAFE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(SAFE_TEXT, children, max_size=4)
    ),
    max_leaves=8,
)
ROWS = st.fixed_dictionaries(
    {
        "amount": st.decimals(-(10**9), 10**9, places=4, allow_nan=False),
        "ratio": st.floats(width=64),
        "big": st.integers(-(2**63), 2**63 - 1),
        "flag": st.booleans(),
        "day": st.dates(),
        "clock": st.times(),
        "uid": st.uuids(),
        "uid_text": st.uuids().map(str),
        "color": st.sampled_from(Color),
        "color_text": st.sampled_from(Color),
        "level": st.sampled_from(Level),
        "size": st.sampled_from(Size),
        "label": st.sampled_from(["x", "y"]),
        "blob": st.binary(max_size=40),
        "tags": st.lists(SAFE_TEXT, max_size=5),
        "grid": st.integers(1, 3).flatmap(
            lambda width: st.lists(st.lists(st.integers(-5, 5), min_size=width, max_size=width))
        ),
        "doc": SAFE_JSON,
        "docb": SAFE_JSON,
        "naive": st.datetimes(datetime(1000, 1, 1), datetime(9000, 1, 1)),
        "aware": st.datetimes(datetime(1000, 1, 1), datetime(9000, 1, 1)).flatmap(
            lambda moment: st.integers(-14 * 60, 14 * 60).map(
                lambda minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
            )
        ),
        "body": SAFE_TEXT,
    }
).flatmap(
    # Any column may be NULL.
    lambda row: st.fixed_dictionaries(
        {name: st.just(value) | st.none() for name, value in row.items()}
    )
)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and math.isnan(left):
        return isinstance(right, float) and math.isnan(right)
    return type(left) is type(right) and left == right


def test_a_trigger_snapshot_reads_back_like_a_session_snapshot(db, Sample):
    session = db.session
    ids = iter(range(1, 10**6))

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(row=ROWS)
    def same_snapshot(row):
        by_session = Sample(id=next(ids), **row)
        session.add(by_session)
        session.commit()
        netted_id = next(ids)
        with db.engine.begin() as connection:
            connection.execute(insert(Sample.__table__).values(id=netted_id, **row))
        by_trigger = session.get(Sample, netted_id)

        (expected,) = by_session.versions()
        (snapshot,) = by_trigger.versions()
        assert snapshot.chrononaut_operation == "insert"
        assert snapshot.chrononaut_user_info["captured_by"] == "database"
        typed, expected_typed = snapshot.typed_data(), expected.typed_data()
        for name in row:
            assert _same(typed[name], expected_typed[name]), name
        # Byte for byte the same JSON, but for two types. Numeric: the database writes
        # the stored value ("0.0000"), the session the assigned one ("-0.0000"). Float:
        # PostgreSQL may write more digits of the same double (5.8517189624567664e16
        # where Python writes 5.851718962456766e16).
        differ = {"id": None, "amount": None, "ratio": None}
        assert dict(snapshot.chrononaut_data, **differ) == dict(expected.chrononaut_data, **differ)

    same_snapshot()


def test_the_escape_mark_in_json_is_refused_by_the_triggers(db, Sample):
    with pytest.raises(DBAPIError, match="U\\+FDD0"), db.engine.begin() as connection:
        connection.execute(insert(Sample.__table__).values(id=1, docb={"a": "\ufdd0b"}))
    assert db.session.scalar(select(func.count()).select_from(Sample)) == 0


def test_types_without_an_equal_sql_form_are_refused(app, db):
    class Span(db.Model, Versioned):
        __tablename__ = "span"
        id = Column(Integer, primary_key=True)
        length = Column(Interval)

    class Plain(db.Model, Versioned):
        __tablename__ = "plain"
        id = Column(Integer, primary_key=True)

    db.create_all()
    app.config["CHRONONAUT_SAFETY_NET"] = True
    with pytest.raises(ChrononautException, match=r"span\.length"):
        db.install_safety_net(Plain, Span)
    # Checked before anything is made.
    assert triggers_of(db.session, "plain") == []


NETTED_APP_SOURCE = """
from flask import Flask

from chrononaut import Versioned, VersionedSQLAlchemy

db = VersionedSQLAlchemy()
apps = []


class Invoice(db.Model, Versioned):
    __tablename__ = "invoice"
    id = db.Column(db.Integer, primary_key=True)
    total = db.Column(db.Numeric(10, 2))


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = {url!r}
    app.config["CHRONONAUT_SAFETY_NET"] = True
    db.init_app(app)
    apps.append(app)
    return app
"""


def test_the_documented_migration_installs_and_removes_the_net(tmp_path, database_url, monkeypatch):
    url = database_url.render_as_string(hide_password=False)
    (tmp_path / f"{APP_MODULE}.py").write_text(NETTED_APP_SOURCE.format(url=url))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, APP_MODULE, raising=False)
    config = Config(str(tmp_path / "alembic.ini"))
    command.init(config, str(tmp_path / "migrations"))
    config.set_main_option("script_location", str(tmp_path / "migrations"))
    shutil.copy(SNIPPETS / "alembic_env.py", env_path(config))
    shutil.copy(SNIPPETS / "safety_net_migration.py", versions(config))
    app_module = importlib.import_module(APP_MODULE)
    app = app_module.create_app()
    try:
        with app.app_context():
            app_module.db.create_all()
            seen = []
            for step, target in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
                getattr(command, step)(config, target)
                seen.append(triggers_of(app_module.db.session, "invoice"))
                app_module.db.session.rollback()
            assert seen == [NET_TRIGGERS, [], seen[0]]

            with app_module.db.engine.begin() as connection:
                connection.execute(text("INSERT INTO invoice (id, total) VALUES (1, 9.5)"))
            invoice = app_module.db.session.get(app_module.Invoice, 1)
            (snapshot,) = invoice.versions()
            assert snapshot.chrononaut_data == {"id": 1, "total": "9.50", "version": 0}
    finally:
        with app.app_context():
            app_module.db.session.remove()
            app_module.db.engine.dispose()


def test_statements_of_many_rows_and_key_changes(db, net, session):
    session.execute(
        text("INSERT INTO todo (id, title) SELECT g, 'todo ' || g FROM generate_series(1, 3) g")
    )
    session.execute(text("UPDATE todo SET id = id + 10, title = 'moved' WHERE id = 3"))
    session.execute(text("UPDATE todo SET title = 'set', version = version + 5 WHERE id = 2"))
    session.execute(text("DELETE FROM todo"))
    session.commit()

    rows = activity(db, "todo")
    # The rows of one statement in key order: the order of a table scan is the server's.
    rows[-3:] = sorted(rows[-3:], key=lambda row: row.key["id"])
    assert [(row.operation, row.key, row.version, row.data["title"]) for row in rows] == [
        ("insert", {"id": 1}, 0, "todo 1"),
        ("insert", {"id": 2}, 0, "todo 2"),
        ("insert", {"id": 3}, 0, "todo 3"),
        ("update", {"id": 13}, 1, "moved"),
        ("update", {"id": 2}, 5, "set"),
        ("delete", {"id": 1}, 1, "todo 1"),
        ("delete", {"id": 2}, 6, "set"),
        ("delete", {"id": 13}, 2, "moved"),
    ]
    # One statement, one time.
    assert len({row.changed for row in rows[:3]}) == 1


def test_json_and_array_columns_are_compared_by_value(db, Sample):
    with db.engine.begin() as connection:
        connection.execute(
            insert(Sample.__table__).values(id=1, doc={"a": 1}, docb={"b": [1]}, tags=["x"])
        )
        # The same values written in other text: no change, no version.
        connection.execute(
            text("""UPDATE sample SET doc = '{ "a" : 1 }', docb = '{"b":[1]}', tags = '{x}'""")
        )
        connection.execute(text("""UPDATE sample SET doc = '{"a": 2}'"""))
    sample = db.session.get(Sample, 1)
    assert [snapshot.typed_data()["doc"] for snapshot in sample.versions()] == [{"a": 1}, {"a": 2}]
    assert sample.version == 1


def test_statements_the_session_handles_are_left_to_it(db, net, session):
    session.add(net.Todo(id=1, title="a"))
    session.commit()
    with suppress_versioning():
        session.execute(update(net.Todo).where(net.Todo.id == 1).values(title="orm"))
        session.execute(update(net.Todo.__table__).values(title="core"))
        session.commit()
    # An ORM statement the session records is recorded by it alone.
    session.execute(update(net.Todo).values(title="recorded"))
    session.commit()
    # Raw SQL afterwards in the same transaction as a handled statement is seen again.
    with suppress_versioning():
        session.execute(update(net.Todo.__table__).values(title="core again"))
    session.connection().execute(text("UPDATE todo SET title = 'raw'"))
    session.commit()

    assert [
        (row.operation, row.data["title"], row.user_info.get("captured_by"))
        for row in activity(db, "todo")
    ] == [
        ("insert", "a", None),
        ("update", "recorded", None),
        ("update", "raw", "database"),
    ]


def test_another_client_is_recorded(db, net, session):
    # A plain driver connection, as psql or another service would write.
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("INSERT INTO todo (id, title) VALUES (1, 'from psql')")
        connection.commit()
    finally:
        connection.close()
    (row,) = activity(db, "todo")
    assert (row.operation, row.data["title"], row.user_info) == (
        "insert",
        "from psql",
        {**NOBODY, **DATABASE},
    )


def test_without_the_net_writes_around_the_session_are_not_seen(db, models, session):
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'text')"))
    session.commit()
    with db.engine.begin() as connection:
        connection.execute(update(models.Todo.__table__).values(title="core on the engine"))
    connection = db.engine.raw_connection()
    try:
        connection.cursor().execute("UPDATE todo SET title = 'another client'")
        connection.commit()
    finally:
        connection.close()

    assert session.scalar(select(models.Todo.title)) == "another client"
    assert activity(db, "todo") == []


def test_a_json_value_without_a_jsonb_form_never_fails_the_session(db, Sample):
    sample = Sample(id=1, doc="a\x00b")
    db.session.add(sample)
    db.session.commit()
    sample.body = "changed"
    db.session.commit()
    db.session.delete(sample)
    db.session.commit()
    assert [snapshot.chrononaut_operation for snapshot in sample.versions()] == [
        "insert",
        "update",
        "delete",
    ]


def test_the_configured_change_info_reaches_the_triggers(app, db, net, session):
    app.config["CHRONONAUT_EXTRA_CHANGE_INFO_FUNC"] = lambda: {"deploy": "v42"}
    session.execute(text("INSERT INTO todo (id, title) VALUES (1, 'a')"))
    session.commit()
    assert activity(db, "todo")[0].extra_info == {"deploy": "v42"}


def test_a_model_of_another_bind_is_refused(database_url):
    url = database_url.render_as_string(hide_password=False)
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_BINDS={"reports": url}, CHRONONAUT_SAFETY_NET=True
    )
    db = VersionedSQLAlchemy(app)

    class Report(db.Model, Versioned):
        __bind_key__ = "reports"
        __tablename__ = "report"
        id = Column(Integer, primary_key=True)

    with app.app_context():
        try:
            db.create_all()
            with pytest.raises(ChrononautException, match="bind key 'reports'"):
                db.install_safety_net()
            assert triggers_of(db.session, "report") == []
        finally:
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_truncate_records_the_delete_of_every_row(db, net, session):
    session.add_all([net.Todo(id=1, title="a", secret="kept-out"), net.Todo(id=2, title="b")])
    session.commit()
    session.get(net.Todo, 2).title = "c"
    session.commit()

    with acting_as("cleanup-job", rationale="start over"):
        session.execute(text("TRUNCATE todo"))
    session.commit()

    rows = activity(db, "todo")
    # Each delete holds the object's last recorded state, under the next version.
    last_state = {row.key["id"]: row.data for row in rows[:3]}
    assert sorted(summary(rows[3:]), key=lambda row: row[2]["id"]) == [
        ("delete", 1, {**last_state[1], "version": 1}),
        ("delete", 2, {**last_state[2], "version": 2}),
    ]
    assert (last_state[1]["title"], last_state[2]["title"]) == ("a", "c")
    assert [(row.user_info, row.extra_info) for row in rows[3:]] == [
        ({"user_id": "cleanup-job", "remote_addr": None, **DATABASE}, {"rationale": "start over"})
    ] * 2
    assert len({row.transaction_id for row in rows[3:]}) == 1
    stored = session.execute(text("SELECT data::text || extra_info::text FROM chrononaut_activity"))
    assert not any("kept-out" in row[0] for row in stored)
    assert session.execute(select(net.Todo.as_of(datetime.now(timezone.utc)))).all() == []
    # History carries on: a truncated object can be brought back.
    net.Todo.undelete(2)
    session.commit()
    assert (session.get(net.Todo, 2).title, session.get(net.Todo, 2).version) == ("c", 3)


def test_truncate_rolled_back_or_suppressed_records_nothing(db, net, session):
    session.add(net.Todo(id=1, title="a"))
    session.commit()
    session.execute(text("TRUNCATE todo"))
    session.rollback()
    with suppress_versioning():
        session.execute(text("TRUNCATE todo"))
        session.commit()

    assert [(row.operation, row.version) for row in activity(db, "todo")] == [("insert", 0)]
    assert session.execute(text("SELECT count(*) FROM todo")).scalar() == 0
