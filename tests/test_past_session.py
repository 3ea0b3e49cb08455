"""``db.as_of(at)``: a read-only session in which versioned models read as they were."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ARRAY,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, ResourceClosedError
from sqlalchemy.orm import joinedload, relationship, selectinload

from chrononaut import Versioned, VersionedSQLAlchemy
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.past import PastSession
from chrononaut.history.serialization import ESCAPE_MARK, UTC
from tests.models import Priority, define_models

TOKYO = timezone(timedelta(hours=9))


def now() -> datetime:
    return datetime.now(UTC)


def changed_at(snapshot: Any) -> datetime:
    changed: datetime = snapshot.chrononaut_meta["changed"]
    return changed


def temporary_relations(connection: Any) -> int:
    count: int = connection.execute(
        text("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()")
    ).scalar()
    return count


# -- reading objects -------------------------------------------------------------------


def test_get_returns_the_object_as_it_was(db, session, models):
    due = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    todo = models.Todo(title="Draft", text="first", priority=Priority.LOW, due_at=due, done=False)
    session.add(todo)
    session.commit()
    before = now()
    todo.title, todo.priority, todo.done = "Final", Priority.HIGH, True
    todo.due_at = due + timedelta(days=1)
    session.commit()

    with db.as_of(before) as past:
        old = past.get(models.Todo, todo.id)
        assert (old.title, old.text, old.priority, old.due_at, old.done, old.version) == (
            "Draft",
            "first",
            Priority.LOW,
            due,
            False,
            0,
        )
        assert old is not todo
        assert past.query(models.Todo).filter_by(title="Draft").one() is old
    assert (todo.title, todo.version) == ("Final", 1)


def test_where_clauses_compare_typed_values(db, session, models):
    low = models.Todo(title="low", priority=Priority.LOW, due_at=datetime(2024, 1, 1, tzinfo=UTC))
    high = models.Todo(
        title="high", priority=Priority.HIGH, due_at=datetime(2024, 6, 1, tzinfo=UTC)
    )
    session.add_all([low, high])
    session.commit()
    before = now()
    low.priority, high.priority = Priority.HIGH, Priority.LOW
    session.commit()

    with db.as_of(before) as past:
        urgent = past.scalars(select(models.Todo).where(models.Todo.priority == Priority.HIGH))
        assert [todo.title for todo in urgent] == ["high"]
        later = past.scalars(
            select(models.Todo.title).where(models.Todo.due_at > datetime(2024, 3, 1, tzinfo=UTC))
        )
        assert later.all() == ["high"]
        assert past.scalar(select(func.count()).select_from(models.Todo)) == 2


def test_objects_created_after_the_moment_are_absent(db, session, models):
    session.add(models.Todo(title="old"))
    session.commit()
    before = now()
    session.add(models.Todo(title="new"))
    session.commit()

    with db.as_of(before) as past:
        assert past.scalars(select(models.Todo.title)).all() == ["old"]


def test_a_moment_before_any_history_shows_no_objects(db, session, models):
    before = now()
    session.add(models.Todo(title="new"))
    session.commit()

    with db.as_of(before) as past:
        assert past.scalars(select(models.Todo)).all() == []


def test_deleted_objects_are_absent_after_their_delete(db, session, models):
    todo = models.Todo(title="doomed")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    alive = now()
    session.delete(todo)
    session.commit()
    gone = now()

    with db.as_of(alive) as past:
        assert past.get(models.Todo, todo_id).title == "doomed"
    with db.as_of(gone) as past:
        assert past.get(models.Todo, todo_id) is None
        assert past.scalars(select(models.Todo)).all() == []


def test_a_reinserted_key_shows_each_life_at_its_time(db, session, models):
    session.add(models.Country(code="zz", name="First"))
    session.commit()
    first = now()
    session.delete(session.get(models.Country, "zz"))
    session.commit()
    between = now()
    session.add(models.Country(code="zz", name="Second"))
    session.commit()
    second = now()

    names = {}
    for moment in (first, between, second):
        with db.as_of(moment) as past:
            country = past.get(models.Country, "zz")
            names[moment] = None if country is None else (country.name, country.version)
    assert names == {first: ("First", 0), between: None, second: ("Second", 0)}


def test_rows_without_a_recorded_operation_follow_the_documented_rule(db, session, models):
    kept, dropped = models.Todo(title="kept"), models.Todo(title="dropped")
    session.add_all([kept, dropped])
    session.commit()
    session.delete(dropped)
    session.commit()
    # As Chrononaut 0.5 wrote them: no operation.
    session.execute(text("UPDATE chrononaut_activity SET operation = NULL"))
    session.commit()

    with db.as_of(now()) as past:
        assert past.scalars(select(models.Todo.title)).all() == ["kept"]


def test_a_change_made_exactly_at_the_moment_is_included(db, session, models):
    todo = models.Todo(title="one")
    session.add(todo)
    session.commit()
    todo.title = "two"
    session.commit()
    changed = changed_at(todo.versions()[-1])

    with db.as_of(changed) as past:
        assert past.get(models.Todo, todo.id).title == "two"
    with db.as_of(changed - timedelta(microseconds=1)) as past:
        assert past.get(models.Todo, todo.id).title == "one"


def test_naive_moments_are_utc_and_aware_ones_any_zone(db, session, models):
    todo = models.Todo(title="one")
    session.add(todo)
    session.commit()
    todo.title = "two"
    session.commit()
    changed = changed_at(todo.versions()[-1])

    for moment in (changed.replace(tzinfo=None), changed.astimezone(TOKYO)):
        with db.as_of(moment) as past:
            assert past.get(models.Todo, todo.id).title == "two"
        earlier = moment - timedelta(microseconds=1)
        with db.as_of(earlier) as past:
            assert past.get(models.Todo, todo.id).title == "one"


def test_a_session_time_zone_changes_nothing(db, tokyo_session, models, order_model):
    session, Order = tokyo_session, order_model
    naive = datetime(2024, 5, 1, 23, 30)
    due = datetime(2024, 5, 1, 23, 30, tzinfo=UTC)
    todo, order = models.Todo(title="one", due_at=due), Order(placed_at=naive)
    session.add_all([todo, order])
    session.commit()
    todo.title = "two"
    session.commit()
    changed = changed_at(todo.versions()[-1])

    with db.as_of(changed - timedelta(microseconds=1)) as past:
        old = past.get(models.Todo, todo.id)
        assert (old.title, old.due_at) == ("one", due)
        assert past.get(Order, order.id).placed_at == naive


def test_a_moment_that_is_not_a_datetime_is_refused(db, models):
    with pytest.raises(InvalidArgumentError, match="datetime"):
        db.as_of("2024-01-01")


def test_keys_of_several_columns_and_attributes_named_unlike_their_columns(db, session, models):
    session.add(models.Translation(locale="fr", slug="hello", text="bonjour"))
    gadget = models.Gadget(display_name="Widget")
    session.add(gadget)
    session.commit()
    before = now()
    session.get(models.Translation, ("fr", "hello")).text = "salut"
    gadget.display_name = "Gizmo"
    session.commit()

    with db.as_of(before) as past:
        assert past.get(models.Translation, ("fr", "hello")).text == "bonjour"
        assert past.get(models.Gadget, gadget.gadget_id).display_name == "Widget"


def test_hidden_and_untracked_attributes_read_as_none(db, session, models):
    todo = models.Todo(title="t", secret="s3cret", starred=True)
    user = models.User(name="Ann", password="hunter2", login_count=7)
    session.add_all([todo, user])
    session.commit()

    with db.as_of(now()) as past:
        old_todo = past.get(models.Todo, todo.id)
        old_user = past.get(models.User, user.id)
        assert (old_todo.title, old_todo.secret, old_todo.starred) == ("t", None, None)
        assert (old_user.name, old_user.password, old_user.login_count) == ("Ann", None, None)
        # Nothing of the hidden value is reachable through SQL either.
        assert past.scalar(select(func.count()).where(models.User.password.is_not(None))) == 0


def test_models_that_are_not_versioned_read_their_live_rows(db, session, models):
    note = models.Note(body="before")
    session.add(note)
    session.commit()
    before = now()
    note.body = "after"
    session.commit()

    with db.as_of(before) as past:
        assert past.get(models.Note, note.id).body == "after"


def test_joined_and_single_table_inheritance(db, session, models):
    dog = models.Dog(name="Rex", breed="lab")
    cat = models.Cat(name="Tom", indoor=True)
    session.add_all([dog, cat, models.Animal(name="Generic")])
    session.commit()
    before = now()
    dog.breed, dog.name, cat.indoor = "collie", "Max", False
    session.add(models.Dog(name="Late", breed="pug"))
    session.commit()
    session.delete(cat)
    session.commit()

    with db.as_of(before) as past:
        animals = past.scalars(select(models.Animal).order_by(models.Animal.id)).all()
        assert [(type(a).__name__, a.name) for a in animals] == [
            ("Dog", "Rex"),
            ("Cat", "Tom"),
            ("Animal", "Generic"),
        ]
        assert (animals[0].breed, animals[1].indoor) == ("lab", True)
        assert past.get(models.Dog, dog.id).breed == "lab"
        assert past.scalars(select(models.Dog.name)).all() == ["Rex"]
    with db.as_of(now()) as past:
        assert past.scalars(select(models.Animal.name).order_by(models.Animal.id)).all() == [
            "Max",
            "Generic",
            "Late",
        ]
        assert past.get(models.Cat, cat.id) is None


# -- relationships ---------------------------------------------------------------------


@pytest.fixture
def library(db, session, models):
    """Two authors and three books, then changes after the moment it returns."""
    ann, bob = models.Author(name="Ann"), models.Author(name="Bob")
    first, second = models.Book(title="First", author=ann), models.Book(title="Second", author=ann)
    third = models.Book(title="Third", author=bob)
    session.add_all([ann, bob, first, second, third])
    session.commit()
    before = now()
    ann.name = "Ann Later"
    second.author = bob
    session.add(models.Book(title="Fourth", author=ann))
    session.delete(third)
    session.commit()
    return before, ann.id, bob.id, first.id


def test_lazy_loads_see_the_same_moment(db, models, library):
    before, ann_id, bob_id, first_id = library
    with db.as_of(before) as past:
        book = past.get(models.Book, first_id)
        assert book.author.name == "Ann"
        ann = past.get(models.Author, ann_id)
        assert sorted(b.title for b in ann.books) == ["First", "Second"]
        bob = past.get(models.Author, bob_id)
        assert [b.title for b in bob.books] == ["Third"]


@pytest.mark.parametrize("loader", [selectinload, joinedload])
def test_eager_loads_see_the_same_moment(db, models, library, loader):
    before = library[0]
    with db.as_of(before) as past:
        authors = (
            past.scalars(
                select(models.Author)
                .options(loader(models.Author.books))
                .order_by(models.Author.id)
            )
            .unique()
            .all()
        )
        assert [(a.name, sorted(b.title for b in a.books)) for a in authors] == [
            ("Ann", ["First", "Second"]),
            ("Bob", ["Third"]),
        ]
        books = past.scalars(select(models.Book).options(loader(models.Book.author))).unique()
        assert sorted((b.title, b.author.name) for b in books) == [
            ("First", "Ann"),
            ("Second", "Ann"),
            ("Third", "Bob"),
        ]


def test_a_plain_association_table_shows_todays_links(db, session, models):
    book = models.Book(title="Tagged")
    old, new = models.Tag(name="old name"), models.Tag(name="new")
    book.tags.append(old)
    session.add_all([book, new])
    session.commit()
    before = now()
    old.name = "renamed"
    book.tags.append(new)
    session.commit()

    with db.as_of(before) as past:
        # The links are today's (book_tag has no history); each tag is as it was.
        tags = past.get(models.Book, book.id).tags
        assert sorted(tag.name for tag in tags) == ["new", "old name"]


@pytest.fixture
def courses(db, models):
    """Students and courses linked through a versioned association model."""

    class Course(db.Model, Versioned):
        __tablename__ = "course"
        id = Column(Integer, primary_key=True)
        name = Column(String(40))

    class Enrollment(db.Model, Versioned):
        __tablename__ = "enrollment"
        student_id = Column(ForeignKey("student.id"), primary_key=True)
        course_id = Column(ForeignKey("course.id"), primary_key=True)

    class Student(db.Model, Versioned):
        __tablename__ = "student"
        id = Column(Integer, primary_key=True)
        name = Column(String(40))
        courses = relationship(Course, secondary="enrollment", order_by=Course.id, viewonly=True)

    db.create_all()
    return Student, Course, Enrollment


@pytest.mark.parametrize("loader", [selectinload, joinedload])
def test_a_versioned_association_model_shows_the_links_of_the_moment(db, session, courses, loader):
    Student, Course, Enrollment = courses
    ada, maths, art = Student(name="Ada"), Course(name="Maths"), Course(name="Art")
    session.add_all([ada, maths, art])
    session.flush()
    session.add(Enrollment(student_id=ada.id, course_id=maths.id))
    session.commit()
    before = now()
    session.delete(session.get(Enrollment, (ada.id, maths.id)))
    session.add(Enrollment(student_id=ada.id, course_id=art.id))
    session.commit()

    with db.as_of(before) as past:
        assert [c.name for c in past.get(Student, ada.id).courses] == ["Maths"]
        eager = past.scalars(select(Student).options(loader(Student.courses))).unique().one()
        assert [c.name for c in eager.courses] == ["Maths"]
    with db.as_of(now()) as past:
        assert [c.name for c in past.get(Student, ada.id).courses] == ["Art"]


# -- values of every kind --------------------------------------------------------------


@pytest.fixture
def order_model(db, models):
    class Order(db.Model, Versioned):
        __tablename__ = "order"  # a reserved word, quoted everywhere
        id = Column(Integer, primary_key=True)
        total = Column(Numeric(12, 2))
        ratio = Column(db.Float)
        placed_on = Column(db.Date)
        opens_at = Column(db.Time)
        placed_at = Column(db.DateTime)  # naive
        wait = Column(db.Interval)
        reference = Column(db.Uuid)
        blob = Column(LargeBinary)
        lines = Column(ARRAY(Integer))
        priorities = Column(ARRAY(db.Enum(Priority, name="order_priority")))
        days = Column(ARRAY(db.Date))
        documents = Column(ARRAY(JSONB))
        extra = Column(JSONB)
        note = Column(db.Text)

    db.create_all()
    return Order


def test_filters_compare_numbers_as_numbers(db, session, order_model):
    Order = order_model
    session.add_all([Order(total=Decimal("99.99")), Order(total=Decimal("250.00"))])
    session.commit()
    before = now()
    session.execute(text('DELETE FROM "order"'))  # unrecorded: today has no orders
    session.commit()

    with db.as_of(before) as past:
        big = past.scalars(select(Order.total).where(Order.total > 100)).all()
        assert big == [Decimal("250.00")]


JSON_TEXT = st.text(st.characters(exclude_characters="\x00" + ESCAPE_MARK), max_size=5)
ORDER_VALUES = st.fixed_dictionaries(
    {
        "total": st.none() | st.decimals(min_value=-(10**9), max_value=10**9, places=2),
        "ratio": st.none() | st.floats(allow_nan=False, width=64),
        "placed_on": st.none() | st.dates(),
        "opens_at": st.none() | st.times(),
        "placed_at": st.none() | st.datetimes(min_value=datetime(1900, 1, 1)),
        "wait": st.none()
        | st.timedeltas(min_value=timedelta(days=-9999), max_value=timedelta(days=9999)),
        "reference": st.none() | st.uuids(),
        "blob": st.none() | st.binary(max_size=20),
        "lines": st.none() | st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
        "priorities": st.none() | st.lists(st.sampled_from(Priority), max_size=3),
        "days": st.none() | st.lists(st.dates(), max_size=3),
        "documents": st.none()
        | st.lists(st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=2), max_size=3),
        # jsonb cannot hold NUL, and strings starting with U+FDD0 are stored escaped
        # and read so (documented).
        "extra": st.none() | st.dictionaries(JSON_TEXT, st.integers() | JSON_TEXT, max_size=3),
        "note": st.none() | st.text().filter(lambda value: "\x00" not in value),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=ORDER_VALUES)
def test_every_type_reads_back_as_the_live_column_returns_it(db, session, order_model, values):
    Order = order_model
    order = Order(**values)
    session.add(order)
    session.commit()
    session.expire_all()
    live = {name: getattr(order, name) for name in values}
    before = now()
    for name in values:
        setattr(order, name, None)
    session.commit()

    with db.as_of(before) as past:
        old = past.get(Order, order.id)
        assert {name: getattr(old, name) for name in values} == live


def test_bytes_stored_before_0_6_read_as_none(db, session, order_model):
    Order = order_model
    order = Order(blob=b"\x00ab", note="kept")
    session.add(order)
    session.commit()
    legacy = json.dumps({"blob": str(b"\x00ab")})  # as releases before 0.6 stored bytes
    session.execute(
        text("UPDATE chrononaut_activity SET data = data || CAST(:legacy AS jsonb)"),
        {"legacy": legacy},
    )
    session.commit()

    with db.as_of(now()) as past:
        old = past.get(Order, order.id)
        assert (old.blob, old.note) == (None, "kept")


# -- read-only, and apart from the live session ----------------------------------------


def test_flushing_is_refused_and_nothing_is_written(db, session, models):
    todo = models.Todo(title="kept")
    session.add(todo)
    session.commit()
    rows = session.scalar(select(func.count()).select_from(db.activity_cls))

    with db.as_of(now()) as past:
        past.get(models.Todo, todo.id).title = "changed"
        with pytest.raises(ChrononautException, match="read-only"):
            past.commit()
        past.rollback()
        past.add(models.Todo(title="new"))
        with pytest.raises(ChrononautException, match="read-only"):
            past.flush()
        past.rollback()
        past.delete(past.get(models.Todo, todo.id))
        with pytest.raises(ChrononautException, match="read-only"):
            past.flush()
        past.rollback()
        with pytest.raises(ChrononautException, match="read-only"):
            past.execute(update(models.Todo).values(title="bulk"))
        with pytest.raises(ChrononautException, match="read-only"):
            past.bulk_insert_mappings(models.Todo, [{"title": "bulk"}])
        with pytest.raises(ChrononautException, match="read-only"):
            past.bulk_update_mappings(models.Todo, [{"id": todo.id, "title": "bulk"}])
        with pytest.raises(ChrononautException, match="read-only"):
            past.bulk_save_objects([models.Todo(title="bulk")])
        # After each refusal the session still shows the past.
        assert past.get(models.Todo, todo.id).title == "kept"
    session.expire_all()
    assert session.scalars(select(models.Todo.title)).all() == ["kept"]
    assert session.scalar(select(func.count()).select_from(db.activity_cls)) == rows


def test_sql_text_cannot_write_either(db, session, models):
    session.add(models.Note(body="live"))
    session.commit()
    with db.as_of(now()) as past, pytest.raises(Exception, match="read-only transaction"):
        past.execute(text("UPDATE note SET body = 'changed'"))
    assert session.scalars(select(models.Note.body)).all() == ["live"]


def test_the_live_session_is_untouched(db, session, models):
    todo = models.Todo(title="saved")
    session.add(todo)
    session.commit()
    before = now()
    todo.title = "pending change"
    todo_id = todo.id  # loaded now: reading it later would autoflush the live session
    pending = models.Todo(title="pending new")
    session.add(pending)
    identity_map = dict(session.identity_map.items())

    with db.as_of(before) as past:
        assert past.get(models.Todo, todo_id).title == "saved"
        assert past.scalars(select(models.Todo.title)).all() == ["saved"]

    assert dict(session.identity_map.items()) == identity_map
    assert session.get(models.Todo, todo_id) is todo
    assert todo.title == "pending change"
    assert pending in session.new
    session.commit()
    assert sorted(session.scalars(select(models.Todo.title))) == ["pending change", "pending new"]


def test_closing_drops_the_views_for_the_next_user_of_the_connection(db, session, models):
    todo = models.Todo(title="old")
    session.add(todo)
    session.commit()
    before = now()
    todo.title = "new"
    session.commit()
    session.close()

    past = db.as_of(before)
    assert isinstance(past, PastSession)
    backend = past.scalar(text("SELECT pg_backend_pid()"))
    assert temporary_relations(past) > 0
    past.close()

    # Every idle connection of the pool at once, so that the past one is among them.
    with db.engine.connect() as first, db.engine.connect() as second:
        by_backend = {c.scalar(text("SELECT pg_backend_pid()")): c for c in (first, second)}
        reused = by_backend[backend]
        assert temporary_relations(reused) == 0
        assert reused.scalar(text("SELECT title FROM todo")) == "new"


def test_a_commit_sent_as_sql_text_does_not_leak_the_views(db, session, models):
    todo = models.Todo(title="old")
    session.add(todo)
    session.commit()
    before = now()
    todo.title = "new"
    session.commit()
    session.close()

    past = db.as_of(before)
    past.connection().exec_driver_sql("COMMIT")
    with pytest.raises(DBAPIError):
        past.close()  # the session's savepoint went with the transaction

    for _ in range(3):
        with db.engine.connect() as connection:
            assert temporary_relations(connection) == 0
            assert connection.scalar(text("SELECT title FROM todo")) == "new"


def test_a_closed_session_reads_nothing_more(db, session, models):
    session.add(models.Todo(title="old"))
    session.commit()
    past = db.as_of(now())
    past.close()
    with pytest.raises(ResourceClosedError):
        past.scalars(select(models.Todo)).all()


def test_an_engine_in_autocommit_mode_keeps_the_session_apart(database_url):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url.render_as_string(hide_password=False),
        SQLALCHEMY_ENGINE_OPTIONS={"isolation_level": "AUTOCOMMIT", "pool_size": 1},
    )
    with app.app_context():
        db = VersionedSQLAlchemy(app)
        models = define_models(db, "classic")
        db.create_all()
        try:
            todo = models.Todo(title="old")
            db.session.add(todo)
            db.session.commit()
            before = now()
            todo.title = "new"
            db.session.commit()
            todo_id = todo.id
            db.session.close()

            with db.as_of(before) as past:
                assert past.get(models.Todo, todo_id).title == "old"
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    past.execute(text("UPDATE note SET body = 'x'"))
            with db.engine.connect() as connection:  # the pool's one connection
                assert temporary_relations(connection) == 0
                assert connection.scalar(text("SELECT title FROM todo")) == "new"
        finally:
            db.session.remove()
            db.engine.dispose()


def test_rolling_the_session_back_keeps_the_moment(db, session, models):
    todo = models.Todo(title="old")
    session.add(todo)
    session.commit()
    before = now()
    todo.title = "new"
    session.commit()
    todo_id = todo.id
    session.remove()
    db.engine.dispose()  # so that opening the past session reads the table's columns

    with db.as_of(before) as past:
        past.rollback()
        past.commit()
        assert past.get(models.Todo, todo_id).title == "old"


def test_a_search_path_that_names_pg_temp_last_is_overridden(db, session, models):
    todo = models.Todo(title="old")
    session.add(todo)
    session.commit()
    todo_id = todo.id
    before = now()
    todo.title = "new"
    session.commit()
    database = db.engine.url.database
    session.execute(text(f'ALTER DATABASE "{database}" SET search_path = public, pg_temp'))
    session.commit()
    session.remove()
    db.engine.dispose()

    with db.as_of(before) as past:
        assert past.get(models.Todo, todo_id).title == "old"


# -- what a past session refuses -------------------------------------------------------


def test_an_activity_table_without_the_time_travel_columns_is_refused(db, session, models):
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()
    with pytest.raises(ChrononautException, match="migration"):
        db.as_of(now())


@pytest.fixture
def sales(db, session, models):
    """Versioned and plain tables in the schema ``sales``, linked to the default one."""
    session.execute(text("CREATE SCHEMA sales"))
    session.commit()

    class Region(db.Model):
        __tablename__ = "region"
        __table_args__ = {"schema": "sales"}
        id = Column(Integer, primary_key=True)
        name = Column(String(40))

    class Invoice(db.Model, Versioned):
        __tablename__ = "invoice"
        __table_args__ = {"schema": "sales"}
        id = Column(Integer, primary_key=True)
        total = Column(Numeric(12, 2))
        author_id = Column(ForeignKey("author.id"))
        region_id = Column(ForeignKey("sales.region.id"))
        author = relationship(models.Author)
        region = relationship(Region)

    db.create_all()
    return Invoice, Region


def test_tables_in_an_explicit_schema_are_read_as_they_were(db, session, models, sales):
    Invoice, Region = sales
    author, region = models.Author(name="Ann"), Region(name="North")
    invoice = Invoice(total=Decimal("10.00"), author=author, region=region)
    session.add(invoice)
    session.commit()
    before = now()
    invoice.total, author.name, region.name = Decimal("20.00"), "Ann Later", "Nord"
    session.add(Invoice(total=Decimal("30.00")))
    session.commit()

    with db.as_of(before) as past:
        old = past.scalars(select(Invoice).options(joinedload(Invoice.author))).unique().one()
        assert (old.total, old.author.name) == (Decimal("10.00"), "Ann")
        assert old.region.name == "Nord"  # the plain table of the schema reads live
        assert past.scalar(select(func.count()).select_from(Invoice)) == 1
        with pytest.raises(DBAPIError, match="read-only transaction"):
            past.execute(text("UPDATE sales.region SET name = 'changed'"))
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Invoice)) == 2
    assert session.scalars(select(Region.name)).all() == ["Nord"]


def test_tables_whose_views_would_share_a_name_are_refused(db, session, models):
    session.execute(text("CREATE SCHEMA sales"))
    session.commit()

    class SalesTodo(db.Model, Versioned):
        __tablename__ = "todo"
        __table_args__ = {"schema": "sales"}
        id = Column(Integer, primary_key=True)

    db.create_all()
    with pytest.raises(ChrononautException, match=r"reads sales\.todo and todo from one"):
        db.as_of(now())


def test_an_engine_that_translates_schemas_is_refused(database_url):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url.render_as_string(hide_password=False),
        SQLALCHEMY_ENGINE_OPTIONS={"execution_options": {"schema_translate_map": {None: "public"}}},
    )
    with app.app_context():
        db = VersionedSQLAlchemy(app)
        define_models(db, "classic")
        try:
            with pytest.raises(ChrononautException, match="schema_translate_map"):
                db.as_of(now())
        finally:
            db.engine.dispose()


def test_models_of_another_bind_are_refused(database_url):
    app = Flask(__name__)
    url = database_url.render_as_string(hide_password=False)
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_BINDS={"other": url})
    with app.app_context():
        db = VersionedSQLAlchemy(app)

        class Elsewhere(db.Model, Versioned):
            __bind_key__ = "other"
            __tablename__ = "elsewhere"
            id = Column(Integer, primary_key=True)

        db.create_all()
        try:
            with db.as_of(now()) as past, pytest.raises(ChrononautException, match="bind key"):
                past.get(Elsewhere, 1)
        finally:
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def test_an_unversioned_association_table_is_declared_as_in_the_docs(models):
    # The test above relies on book_tag being a plain Table without history.
    assert isinstance(models.Book.tags.property.secondary, Table)
    assert not hasattr(models.Book.tags.property.secondary, "version")


# -- the examples of docs/past-session.rst ---------------------------------------------

SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"


def snippet(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SNIPPETS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_catalogue_example_lists_the_books_of_the_moment(db, models, library):
    before = library[0]
    catalogue = snippet("past_session_catalogue").catalogue_at(db, models.Author, before)
    assert catalogue == {"Ann": ["First", "Second"], "Bob": ["Third"]}


def test_the_renamed_example_compares_the_moment_with_today(db, session, models, library):
    before, ann_id, bob_id, _ = library
    renamed = snippet("past_session_renamed").renamed_since(db, models.Author, before)
    assert renamed == {ann_id: ("Ann", "Ann Later")}
    assert bob_id not in renamed


def index_and_partitions(session, index):
    """The name of ``index`` and those of its partitions, if it is partitioned."""
    partitions = session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:index)"
        ),
        {"index": index},
    )
    return {index, *partitions}


def test_the_documented_indexes_serve_lookups_in_a_past_session(db, session, models):
    # A long history, written as the recorder writes it.
    session.execute(
        text(
            "INSERT INTO chrononaut_activity (table_name, changed, version, key, data, operation) "
            "SELECT 'book', now() - interval '1 day' + v * interval '1 second', v, "
            "jsonb_build_object('id', i), "
            "jsonb_build_object('title', 't' || i, 'author_id', i % 50, 'version', v), "
            "CASE v WHEN 0 THEN 'insert' ELSE 'update' END "
            "FROM generate_series(1, 2000) i, generate_series(0, 2) v"
        )
    )
    session.execute(text((SNIPPETS / "past_session_index.sql").read_text()))
    session.commit()
    session.execute(text("ANALYZE chrononaut_activity"))
    session.commit()

    with db.as_of(now()) as past:
        by_key = select(models.Book).where(models.Book.id == 7)
        by_author = select(models.Book.id).where(models.Book.author_id == 3)
        for statement, index in [
            (by_key, "ix_chrononaut_activity_past_book_id"),
            (by_author, "ix_chrononaut_activity_past_book_author_id"),
        ]:
            compiled = statement.compile(past.get_bind(), compile_kwargs={"literal_binds": True})
            plan = "\n".join(past.execute(text(f"EXPLAIN {compiled}")).scalars())
            # On a partitioned table, the plan reads the index's partitions.
            used = set(re.findall(r"Index Scan (?:using|on) (\w+)", plan))
            assert used & index_and_partitions(past, index)
        assert past.get(models.Book, 7).title == "t7"
        assert len(past.scalars(by_author).all()) == 40
        # Where the documentation sends readers for the expression of each column.
        view = past.scalar(text("SELECT pg_get_viewdef('pg_temp.book')"))
        # PostgreSQL 15 qualifies the column with the view's alias, 18 does not.
        assert re.search(
            r"\(\((past_row\.)?data\['author_id'::text\] #>> '\{\}'::text\[\]\)\)::integer"
            r" AS author_id",
            view,
        )


def test_results_streamed_in_batches_see_the_moment(db, session, models):
    todos = [models.Todo(title=f"old {number}") for number in range(7)]
    session.add_all(todos)
    session.commit()
    before = now()
    for todo in todos:
        todo.title = todo.title.replace("old", "new")
    session.add(models.Todo(title="later"))
    session.commit()

    with db.as_of(before) as past:
        # yield_per streams: psycopg2 and psycopg 3 then read through a server-side
        # (named) cursor, which must see the session's views as well.
        streamed = past.execute(
            select(models.Todo).order_by(models.Todo.id).execution_options(yield_per=3)
        )
        scalars = streamed.scalars()
        first = next(scalars)
        open_cursors = past.execute(text("SELECT count(*) FROM pg_cursors")).scalar()
        titles = [first.title, *(todo.title for todo in scalars)]

    assert open_cursors == 1
    assert titles == [f"old {number}" for number in range(7)]
