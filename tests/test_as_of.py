"""Dated reads of whole models: ``Model.as_of(at)``, ``Model.changed_between()`` and
:func:`~chrononaut.history.dated.stored_value`."""

from __future__ import annotations

import enum
import importlib.util
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, inspect, literal, select, text
from sqlalchemy.dialects.postgresql import JSONB

from chrononaut import ChrononautException, Versioned, extra_change_info
from chrononaut.exceptions import InvalidArgumentError
from chrononaut.history.activity import activity_class_for
from chrononaut.history.dated import stored_value
from chrononaut.history.serialization import UTC, deserialize_value
from chrononaut.unsafe import suppress_versioning
from tests.models import Priority
from tests.test_types import STRATEGIES, Color, Sample, Size, _same  # noqa: F401  (a fixture)

SNIPPETS = Path(__file__).parent.parent / "docs" / "snippets"
#: The partial index of the rows without an operation.
INDEX = "ix_chrononaut_activity_without_operation"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_stored_values_read_back_as_their_column_types(db, Sample, name):  # noqa: F811
    session = db.session
    activity = activity_class_for(Sample).__table__
    column_type = Sample.__table__.c[name].type

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=STRATEGIES[name])
    def read_back(value):
        sample = Sample(**{name: value})
        session.add(sample)
        session.commit()

        (snapshot,) = sample.versions()
        typed = session.execute(
            select(stored_value(activity.c.data[name], column_type)).where(
                activity.c.id == snapshot.chrononaut_activity_id
            )
        ).scalar_one()
        assert _same(typed, snapshot.typed_data()[name])

    read_back()


@pytest.mark.parametrize(
    ("name", "stored", "expected"),
    [
        ("amount", 1.5, Decimal("1.5")),
        ("color", "r", Color.RED),
        ("size", 2, Size.LARGE),
        ("aware", "2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("aware", "2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)),
        ("naive", "2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30)),
        ("aware", "2024-05-01T07:30:00.5-05:00", datetime(2024, 5, 1, 12, 30, 0, 500000, UTC)),
        ("naive", "2024-05-01 12:30:00.25", datetime(2024, 5, 1, 12, 30, 0, 250000)),
        ("naive", "2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30)),
        ("ratio", "inf", float("inf")),
        ("span", "-1 day, 23:00:00", timedelta(hours=-1)),
        ("tags", ["\ufdd0a\\\\b"], ["a\\b"]),
        ("doc", {"\ufdd0k": "\ufdd0a\\0"}, {"k": "a\x00"}),
        ("amount", None, None),
    ],
)
def test_other_writers_forms_read_back(db, Sample, name, stored, expected):  # noqa: F811
    """Forms older releases or other writers stored read as deserialize_value reads them."""
    column_type = Sample.__table__.c[name].type
    typed = db.session.execute(
        select(stored_value(literal(stored, JSONB), column_type))
    ).scalar_one()
    assert typed == expected
    assert deserialize_value(stored, column_type) == expected


# -- helpers ---------------------------------------------------------------------------


def _changed_of_last_commit(session, models):
    """The time of the newest activity row: the time of the commit just made."""
    activity = activity_class_for(models.Todo).__table__
    return session.execute(select(func.max(activity.c.changed))).scalar_one()


def _rows(session, dated, *names, order_by=None):
    columns = [dated.c[name] for name in names]
    statement = select(*columns).order_by(*(columns if order_by is None else order_by))
    return [tuple(row) for row in session.execute(statement)]


#: How the rows the dated reads are tested on record their operation: every row does; none
#: does (the model's read plan, made at its first read, then applies the rule of
#: chrononaut.history.lives to every row); none does from after the model's first read
#: (the plan, made while all did, applies the rule only to the rows found without one,
#: as for rows an older release writes after the migration).
RECORDINGS = ["recorded", "without operations", "without operations after the first read"]


def _first_read(recording, model):
    """The model to read before forgetting the operations, for ``recording``."""
    return model if recording == RECORDINGS[2] else None


def _forget_operations(db, first_read=None):
    """Make every activity row look written by a release that did not record its
    operation, so that dated reads apply the rule of chrononaut.history.lives.

    :param first_read: a model to read as of now before, so that its read plan is made
        while every row records its operation.
    """
    if first_read is not None:
        first_read.as_of(datetime.now(timezone.utc))
    with suppress_versioning(allow_deleting_history=True):
        db.session.execute(text("UPDATE chrononaut_activity SET operation = NULL"))
        db.session.commit()


# -- as_of -------------------------------------------------------------------------------


@pytest.mark.parametrize("recording", RECORDINGS)
def test_each_object_reads_in_its_state_at_the_time(db, session, models, recording):
    Todo = models.Todo
    first, second = Todo(title="a1"), Todo(title="b1")
    session.add_all([first, second])
    session.commit()
    created = _changed_of_last_commit(session, models)
    first.title = "a2"
    session.commit()
    updated = _changed_of_last_commit(session, models)
    session.delete(second)
    session.commit()
    deleted = _changed_of_last_commit(session, models)
    if recording != "recorded":
        _forget_operations(db, _first_read(recording, Todo))

    def state(at):
        return _rows(session, Todo.as_of(at), "id", "title", "version")

    a, b = first.id, second.id
    assert state(created - timedelta(microseconds=1)) == []
    # A change made exactly at the time asked is part of the state, as in version_at().
    assert state(created) == [(a, "a1", 0), (b, "b1", 0)]
    assert state(updated - timedelta(microseconds=1)) == [(a, "a1", 0), (b, "b1", 0)]
    assert state(updated) == [(a, "a2", 1), (b, "b1", 0)]
    assert state(deleted - timedelta(microseconds=1)) == [(a, "a2", 1), (b, "b1", 0)]
    assert state(deleted) == [(a, "a2", 1)]
    assert state(deleted + timedelta(days=1)) == [(a, "a2", 1)]


def test_the_changed_column_tells_when_each_state_began(session, models):
    Todo = models.Todo
    todo = Todo(title="a")
    session.add(todo)
    session.commit()
    created = _changed_of_last_commit(session, models)
    todo.title = "b"
    session.commit()

    dated = Todo.as_of(created + timedelta(microseconds=1))
    assert session.execute(select(dated.c.chrononaut_changed)).scalar_one() == created


@pytest.mark.parametrize("recording", RECORDINGS)
def test_an_object_created_and_deleted_in_one_transaction_never_appears(
    db, session, models, recording
):
    Todo = models.Todo
    kept = Todo(title="kept")
    session.add(kept)
    session.commit()
    fleeting = Todo(title="fleeting")
    session.add(fleeting)
    session.flush()
    inserted = _changed_of_last_commit(session, models)
    session.delete(fleeting)
    session.commit()
    deleted = _changed_of_last_commit(session, models)
    if recording != "recorded":
        _forget_operations(db, _first_read(recording, Todo))

    # Inside the transaction the object existed; from its delete on, it does not.
    assert _rows(session, Todo.as_of(inserted), "title") == [("fleeting",), ("kept",)]
    assert _rows(session, Todo.as_of(deleted), "title") == [("kept",)]
    assert _rows(session, Todo.as_of(deleted + timedelta(hours=1)), "title") == [("kept",)]


def test_objects_created_and_deleted_within_one_second(session, models):
    Todo = models.Todo
    todo = Todo(title="brief")
    session.add(todo)
    session.commit()
    created = _changed_of_last_commit(session, models)
    session.delete(todo)
    session.commit()
    deleted = _changed_of_last_commit(session, models)
    assert deleted - created < timedelta(seconds=1)

    assert _rows(session, Todo.as_of(created), "title") == [("brief",)]
    assert _rows(session, Todo.as_of(deleted), "title") == []


@pytest.mark.parametrize("recording", RECORDINGS)
def test_a_deleted_and_reinserted_key_reads_as_each_life(db, session, models, recording):
    Todo = models.Todo
    session.add(Todo(id=7, title="first life"))
    session.commit()
    first_life = _changed_of_last_commit(session, models)
    session.delete(session.get(Todo, 7))
    session.commit()
    gone = _changed_of_last_commit(session, models)
    session.add(Todo(id=7, title="second life"))
    session.commit()
    second_life = _changed_of_last_commit(session, models)
    session.get(Todo, 7).title = "second life, changed"
    session.commit()
    if recording != "recorded":
        _forget_operations(db, _first_read(recording, Todo))

    def state(at):
        return _rows(session, Todo.as_of(at), "id", "title", "version")

    assert state(first_life) == [(7, "first life", 0)]
    assert state(gone) == []
    assert state(second_life) == [(7, "second life", 0)]
    assert state(datetime.now(timezone.utc)) == [(7, "second life, changed", 1)]


@pytest.mark.parametrize("recording", RECORDINGS[1:])
def test_an_object_deleted_without_history_ends_with_its_last_recorded_state(
    db, session, models, recording
):
    """A delete inside suppress_versioning() leaves no row: the rule of rows without an
    operation takes the last recorded state to be the end only when nothing follows."""
    Todo = models.Todo
    todo = Todo(title="a")
    session.add(todo)
    session.commit()
    todo.title = "b"
    session.commit()
    with suppress_versioning():
        session.delete(todo)
        session.commit()
    _forget_operations(db, _first_read(recording, Todo))

    assert _rows(session, Todo.as_of(datetime.now(timezone.utc)), "title") == []


def test_naive_times_are_utc(session, models):
    Todo = models.Todo
    session.add(Todo(title="a"))
    session.commit()
    created = _changed_of_last_commit(session, models)
    naive = created.astimezone(timezone.utc).replace(tzinfo=None)
    tokyo = created.astimezone(timezone(timedelta(hours=9)))

    assert _rows(session, Todo.as_of(naive), "title") == [("a",)]
    assert _rows(session, Todo.as_of(tokyo), "title") == [("a",)]
    assert _rows(session, Todo.as_of(naive - timedelta(microseconds=1)), "title") == []
    assert _rows(session, Todo.as_of(tokyo - timedelta(microseconds=1)), "title") == []


def test_values_have_the_types_of_their_columns(session, models):
    Todo = models.Todo
    due = datetime(2030, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    session.add(Todo(title="a", done=True, priority=Priority.HIGH, due_at=due))
    session.commit()
    dated = Todo.as_of(datetime.now(timezone.utc))

    row = session.execute(select(dated)).one()
    assert row.priority is Priority.HIGH
    assert row.due_at == due and row.due_at.tzinfo is not None
    assert row.done is True
    # Compared and sorted in SQL as the columns themselves are.
    assert _count(session, dated, dated.c.priority == Priority.HIGH) == 1
    assert (
        _count(session, dated, dated.c.due_at > datetime(2030, 5, 1, 10, 29, tzinfo=timezone.utc))
        == 1
    )
    assert (
        _count(session, dated, dated.c.due_at > datetime(2030, 5, 1, 10, 30, tzinfo=timezone.utc))
        == 0
    )


class Awkward(enum.Enum):
    COLON = ":name"
    PERCENT = "100%"
    QUOTE = "it's"
    BACKSLASH = "a\\:b"


def test_names_and_values_that_look_like_parameters_or_escapes_read_back(db):
    # The statement of a dated read is kept as SQL text, in which a colon, a percent
    # sign, a quote or a backslash must keep its meaning.
    class Strange(db.Model, Versioned):
        __tablename__ = "strange:table%"
        id = db.Column(db.Integer, primary_key=True)
        mood = db.Column(
            "mood:x%",
            db.Enum(Awkward, name="awkward", values_callable=lambda e: [m.value for m in e]),
        )
        note = db.Column(db.Text)

    db.create_all()
    session = db.session
    for number, member in enumerate(Awkward, 1):
        session.add(Strange(id=number, mood=member, note=f"%(x)s :note {member.value}"))
    session.commit()
    dated = Strange.as_of(datetime.now(timezone.utc))

    rows = session.execute(select(dated.c.id, dated.c.mood, dated.c.note).order_by(dated.c.id))
    assert rows.all() == [
        (number, member, f"%(x)s :note {member.value}") for number, member in enumerate(Awkward, 1)
    ]
    for member in Awkward:
        assert _count(session, dated, dated.c.mood == member) == 1


def _count(session, dated, *criteria):
    return session.execute(select(func.count()).select_from(dated).where(*criteria)).scalar_one()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_column_type_reads_back_as_the_column_does(db, Sample, name):  # noqa: F811
    session = db.session

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=STRATEGIES[name])
    def read_back(value):
        sample = Sample(**{name: value})
        session.add(sample)
        session.commit()
        dated = Sample.as_of(datetime.now(timezone.utc))

        typed = session.execute(select(dated.c[name]).where(dated.c.id == sample.id)).scalar_one()
        live = session.execute(select(getattr(Sample, name)).where(Sample.id == sample.id))
        assert _same(typed, live.scalar_one())

    read_back()


def test_hidden_and_untracked_attributes_are_not_columns(session, models):
    dated = models.Todo.as_of(datetime.now(timezone.utc))
    assert list(dated.c.keys()) == [
        "id",
        "title",
        "text",
        "done",
        "priority",
        "due_at",
        "version",
        "chrononaut_changed",
    ]
    assert "secret" not in dated.c and "starred" not in dated.c


def test_attributes_named_unlike_their_columns(session, models):
    Gadget = models.Gadget
    session.add(Gadget(gadget_id=3, display_name="widget"))
    session.commit()
    dated = Gadget.as_of(datetime.now(timezone.utc))
    assert _rows(session, dated, "gadget_id", "display_name") == [(3, "widget")]


def test_composite_keys(session, models):
    Translation = models.Translation
    session.add_all(
        [
            Translation(locale="en", slug="hello", text="Hello"),
            Translation(locale="fr", slug="hello", text="Bonjour"),
        ]
    )
    session.commit()
    created = _changed_of_last_commit(session, models)
    session.get(Translation, ("fr", "hello")).text = "Salut"
    session.delete(session.get(Translation, ("en", "hello")))
    session.commit()

    before = Translation.as_of(created)
    assert _rows(session, before, "locale", "slug", "text") == [
        ("en", "hello", "Hello"),
        ("fr", "hello", "Bonjour"),
    ]
    now = Translation.as_of(datetime.now(timezone.utc))
    assert _rows(session, now, "locale", "slug", "text", "version") == [("fr", "hello", "Salut", 1)]
    one = select(before.c.text).where(before.c.locale == "fr", before.c.slug == "hello")
    assert session.execute(one).scalar_one() == "Bonjour"


def test_text_keys_filter_and_sort(session, models):
    Country = models.Country
    session.add_all([Country(code=code, name=code.lower()) for code in ("NO", "DE", "FR")])
    session.commit()
    dated = Country.as_of(datetime.now(timezone.utc))

    assert _rows(session, dated, "code") == [("DE",), ("FR",), ("NO",)]
    assert session.execute(select(dated.c.name).where(dated.c.code == "FR")).scalar_one() == "fr"
    assert _rows(session, dated, "code", order_by=[dated.c.code.desc()]) == [
        ("NO",),
        ("FR",),
        ("DE",),
    ]
    assert _count(session, dated, dated.c.code.in_(["DE", "NO", "XX"])) == 2
    assert _count(session, dated, dated.c.code.like("%R")) == 1


def test_joined_and_single_table_inheritance(session, models):
    Animal, Dog, Cat = models.Animal, models.Dog, models.Cat
    session.add_all(
        [
            Animal(id=1, name="generic"),
            Dog(id=2, name="rex", breed="lab"),
            Cat(id=3, name="tom", indoor=True),
        ]
    )
    session.commit()
    created = _changed_of_last_commit(session, models)
    session.get(Dog, 2).breed = "collie"
    session.get(Cat, 3).indoor = False
    session.commit()

    assert _rows(session, Animal.as_of(created), "id", "kind", "name") == [
        (1, "animal", "generic"),
        (2, "dog", "rex"),
        (3, "cat", "tom"),
    ]
    assert _rows(session, Dog.as_of(created), "id", "name", "breed") == [(2, "rex", "lab")]
    assert _rows(session, Cat.as_of(created), "id", "name", "indoor") == [(3, "tom", True)]
    now = datetime.now(timezone.utc)
    assert _rows(session, Dog.as_of(now), "id", "breed", "version") == [(2, "collie", 1)]
    assert _rows(session, Cat.as_of(now), "id", "indoor", "version") == [(3, False, 1)]
    assert "breed" not in Animal.as_of(now).c


def test_filter_order_paginate_and_count(session, models):
    Todo = models.Todo
    session.add_all(
        [Todo(id=number, title=f"t{number}", done=number % 2 == 0) for number in range(1, 31)]
    )
    session.commit()
    at = _changed_of_last_commit(session, models)
    for todo in session.scalars(select(Todo)):
        todo.title = "changed later"
    session.commit()
    dated = Todo.as_of(at)

    page = select(dated.c.id).order_by(dated.c.id).offset(10).limit(5)
    assert session.scalars(page).all() == [11, 12, 13, 14, 15]
    last = select(dated.c.id).order_by(dated.c.id.desc()).limit(2)
    assert session.scalars(last).all() == [30, 29]
    after = select(dated.c.id).where(dated.c.id > 27).order_by(dated.c.id)
    assert session.scalars(after).all() == [28, 29, 30]
    assert _count(session, dated, dated.c.done.is_(True)) == 15
    assert session.execute(select(dated.c.title).where(dated.c.id == 4)).scalar_one() == "t4"
    assert _count(session, dated, dated.c.title == "changed later") == 0


def test_two_models_at_one_time_join_on_their_keys(session, models):
    Author, Book = models.Author, models.Book
    ann, bob = Author(name="Ann"), Author(name="Bob")
    book = Book(title="Dune", author=ann)
    session.add_all([ann, bob, book])
    session.commit()
    at = _changed_of_last_commit(session, models)
    book.author = bob
    ann.name = "Ann B."
    session.commit()

    authors, books = Author.as_of(at), Book.as_of(at)
    joined = (
        select(books.c.title, authors.c.name)
        .select_from(books)
        .join(authors, authors.c.id == books.c.author_id)
    )
    assert session.execute(joined).all() == [("Dune", "Ann")]
    # The dated key also joins live tables: the book's author now, named as then.
    live = (
        select(Book.title, authors.c.name)
        .select_from(Book)
        .join(authors, authors.c.id == Book.author_id)
    )
    assert session.execute(live).all() == [("Dune", "Bob")]
    now_authors = Author.as_of(datetime.now(timezone.utc))
    now_joined = (
        select(books.c.title, now_authors.c.name)
        .select_from(books)
        .join(now_authors, now_authors.c.id == books.c.author_id)
    )
    assert session.execute(now_joined).all() == [("Dune", "Ann B.")]


def test_one_model_at_two_times_in_one_query(session, models):
    Todo = models.Todo
    todo = Todo(title="before")
    session.add(todo)
    session.commit()
    before = _changed_of_last_commit(session, models)
    todo.title = "after"
    session.commit()
    after = _changed_of_last_commit(session, models)

    then, now = Todo.as_of(before), Todo.as_of(after)
    query = select(then.c.title, now.c.title).select_from(then).join(now, then.c.id == now.c.id)
    assert session.execute(query).all() == [("before", "after")]


def test_key_filters_and_key_order_use_the_index(session, models):
    """A filter on a one-column key reaches the activity index as a condition on the
    stored key, and a page in key order reads the index in order, without sorting."""
    Todo = models.Todo
    session.add_all([Todo(title="a"), Todo(title="b")])
    session.commit()
    dated = Todo.as_of(datetime.now(timezone.utc))

    one = _plan(session, select(dated).where(dated.c.id == 1))
    assert "(key = '{\"id\": 1}'::jsonb)" in one
    page = _plan(session, select(dated).order_by(dated.c.id).limit(50))
    # No Sort node; a Merge Append of partitions in key order has a "Sort Key" line.
    assert not re.search(r"Sort +\(cost", page)


def _plan(session, statement, analyze=False):
    """The plan PostgreSQL makes for ``statement``, as text; run, with what each node
    did, if ``analyze``."""
    connection = session.connection()

    def explain(conn, cursor, sql, parameters, context, executemany):
        return ("EXPLAIN (ANALYZE) " if analyze else "EXPLAIN ") + sql, parameters

    event.listen(connection, "before_cursor_execute", explain, retval=True)
    try:
        # The plan's lines, read past the result processing of the statement's columns.
        return "\n".join(line for (line,) in connection.execute(statement).cursor.fetchall())
    finally:
        event.remove(connection, "before_cursor_execute", explain)


def test_bad_times_are_refused(session, models):
    with pytest.raises(InvalidArgumentError, match="datetime"):
        models.Todo.as_of("2024-01-01")
    with pytest.raises(InvalidArgumentError, match="datetime"):
        models.Todo.changed_between(date(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(InvalidArgumentError, match="before it starts"):
        models.Todo.changed_between(datetime(2024, 1, 2), datetime(2024, 1, 1))


def test_a_table_without_the_time_travel_columns_is_refused(db, session, models):
    session.add(models.Todo(title="a"))
    session.commit()
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()

    for call in (
        lambda: models.Todo.as_of(datetime.now(timezone.utc)),
        lambda: models.Todo.changed_between(datetime(2024, 1, 1), datetime.now(timezone.utc)),
    ):
        with pytest.raises(ChrononautException, match=r"docs/migration\.rst") as raised:
            call()
        assert "operation" in str(raised.value)


# -- changed_between ---------------------------------------------------------------------


@pytest.mark.parametrize("recording", RECORDINGS)
def test_changes_of_a_window(db, session, models, recording):
    Todo = models.Todo
    todo, other = Todo(title="a"), Todo(title="x")
    session.add_all([todo, other])
    session.commit()
    created = _changed_of_last_commit(session, models)
    todo.title = "b"
    session.commit()
    updated = _changed_of_last_commit(session, models)
    session.delete(todo)
    session.commit()
    deleted = _changed_of_last_commit(session, models)
    if recording != "recorded":
        _forget_operations(db, _first_read(recording, Todo))

    def changes(start, end):
        window = Todo.changed_between(start, end)
        return _rows(
            session,
            window,
            "id",
            "version",
            "chrononaut_operation",
            order_by=[window.c.chrononaut_changed, window.c.id],
        )

    a, x = todo.id, other.id
    everything = [(a, 0, "insert"), (x, 0, "insert"), (a, 1, "update"), (a, 2, "delete")]
    assert changes(created - timedelta(seconds=1), deleted) == everything
    # The start is excluded and the end included: as_of(start) plus these is as_of(end).
    assert changes(created, deleted) == everything[2:]
    assert changes(created, updated) == [(a, 1, "update")]
    assert changes(updated, deleted - timedelta(microseconds=1)) == []
    assert changes(deleted, deleted + timedelta(days=1)) == []


def test_changes_carry_who_and_why(app, session, models):
    with extra_change_info(reason="import"):
        session.add(models.Todo(title="a"))
        session.commit()
    now = datetime.now(timezone.utc)
    window = models.Todo.changed_between(now - timedelta(hours=1), now)

    row = session.execute(select(window)).one()
    assert row.chrononaut_user_info == {"user_id": None, "remote_addr": None}
    assert row.chrononaut_extra_info == {"reason": "import"}
    assert list(window.c.keys()) == [
        "id",
        "version",
        "chrononaut_operation",
        "chrononaut_changed",
        "chrononaut_user_info",
        "chrononaut_extra_info",
    ]


def test_changes_of_subclasses(session, models):
    session.add_all([models.Dog(name="rex"), models.Cat(name="tom"), models.Animal(name="x")])
    session.commit()
    now = datetime.now(timezone.utc)
    start = now - timedelta(hours=1)
    assert _count(session, models.Animal.changed_between(start, now)) == 3
    assert _count(session, models.Dog.changed_between(start, now)) == 1
    assert _count(session, models.Cat.changed_between(start, now)) == 1


# -- the property: as_of replays the live table ---------------------------------------

#: Commits of operations on a few keys; each operation is flushed on its own, so that
#: one commit may create, change and delete one object.
COMMITS = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "update", "delete"]),
            st.integers(1, 4),
            st.text("abc", max_size=3),
        ),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("recording", RECORDINGS)
def test_as_of_equals_the_live_table_as_it_was(db, session, models, recording):
    Todo = models.Todo
    activity = activity_class_for(Todo).__table__

    def live():
        return sorted(
            tuple(row) for row in session.execute(select(Todo.id, Todo.title, Todo.version))
        )

    def newest_id():
        return session.execute(select(func.coalesce(func.max(activity.c.id), 0))).scalar_one()

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(commits=COMMITS)
    def replay(commits):
        initial = live()
        # (time of the commit's first row, time of its last row, live table after it)
        history = []
        for operations in commits:
            before = newest_id()
            for kind, key, title in operations:
                todo = session.get(Todo, key)
                if kind == "insert" and todo is None:
                    session.add(Todo(id=key, title=title))
                elif kind == "update" and todo is not None:
                    todo.title = title
                elif kind == "delete" and todo is not None:
                    session.delete(todo)
                session.flush()
            session.commit()
            first, last = session.execute(
                select(func.min(activity.c.changed), func.max(activity.c.changed)).where(
                    activity.c.id > before
                )
            ).one()
            if first is not None:
                history.append((first, last, live()))
        if recording != "recorded":
            _forget_operations(db, _first_read(recording, Todo))

        def as_of(at):
            dated = Todo.as_of(at)
            return _rows(session, dated, "id", "title", "version")

        state = initial
        previous_last = None
        for first, last, after in history:
            before_it = first - timedelta(microseconds=1)
            if previous_last is None or before_it > previous_last:
                assert as_of(before_it) == state
            if previous_last is not None:
                assert as_of(previous_last + (first - previous_last) / 2) == state
            assert as_of(last) == after
            state, previous_last = after, last
        assert as_of(datetime.now(timezone.utc)) == state

    replay()


# -- the partial index of rows without an operation ------------------------------------


def _index_names(db):
    return {index["name"] for index in inspect(db.engine).get_indexes("chrononaut_activity")}


def _snippet(name):
    spec = importlib.util.spec_from_file_location(name, SNIPPETS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rule_lookups(plan):
    """The lines of ``plan`` that look for an object's next row, as the rule does (in
    the partitioned layout, once per partition: ``later_1``, ``later_2``...)."""
    return [line for line in plan.splitlines() if re.search(r" later(_\d+)? ", line)]


def test_the_rule_runs_only_for_rows_without_an_operation(db, session, models):
    Todo = models.Todo
    kept, gone = Todo(title="kept"), Todo(title="gone")
    session.add_all([kept, gone])
    session.commit()
    session.delete(gone)
    session.commit()
    now = datetime.now(timezone.utc)

    # Every row says its operation: the rule is part of the statement, but never run.
    recorded = _plan(session, select(Todo.as_of(now)), analyze=True)
    assert _rule_lookups(recorded)
    assert all("never executed" in line for line in _rule_lookups(recorded))
    assert _rows(session, Todo.as_of(now), "title") == [("kept",)]

    # Rows without one, written after the plan was made, are read by the rule.
    _forget_operations(db)
    forgotten = _plan(session, select(Todo.as_of(now)), analyze=True)
    assert not any("never executed" in line for line in _rule_lookups(forgotten))
    assert _rows(session, Todo.as_of(now), "title") == [("kept",)]
    assert "chrononaut_unrecorded" in forgotten

    # A new pool makes the plan anew: the rule for every row, gathered no more.
    db.engine.dispose()
    anew = _plan(session, select(Todo.as_of(now)))
    assert _rule_lookups(anew) and "chrononaut_unrecorded" not in anew
    assert _rows(session, Todo.as_of(now), "title") == [("kept",)]


def test_without_the_index_the_rule_stays(db, session, models):
    # The time-travel migration builds the index (tests/test_alembic.py runs it); until
    # then, a table of rows that all record their operation is still read by the rule.
    Todo = models.Todo
    todo = Todo(title="a")
    session.add(todo)
    session.commit()
    session.delete(todo)
    session.commit()
    session.execute(text(f"DROP INDEX {INDEX}"))
    session.commit()
    now = datetime.now(timezone.utc)

    plan = _plan(session, select(Todo.as_of(now)))
    assert _rule_lookups(plan) and "chrononaut_unrecorded" not in plan
    assert _rows(session, Todo.as_of(now), "id") == []


def test_the_index_is_part_of_the_activity_table(db, models):
    assert INDEX in _index_names(db)


# -- what the reads keep per connection pool -------------------------------------------


def test_the_database_is_asked_once_per_pool(db, session, models):
    Todo = models.Todo
    session.add(Todo(title="a"))
    session.commit()
    now = datetime.now(timezone.utc)
    asked = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "to_regclass" in statement:
            asked.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        Todo.as_of(now)
        Todo.as_of(now - timedelta(hours=1))
        Todo.changed_between(now - timedelta(hours=1), now)
        assert len(asked) == 1
        db.engine.dispose()
        Todo.as_of(now)
        assert len(asked) == 2
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_one_time_read_twice_in_one_query(session, models):
    Todo = models.Todo
    session.add_all([Todo(title="a"), Todo(title="b")])
    session.commit()
    now = datetime.now(timezone.utc)

    first, second = Todo.as_of(now), Todo.as_of(now)
    query = (
        select(first.c.title, second.c.title)
        .join_from(first, second, first.c.id == second.c.id)
        .order_by(first.c.title)
    )
    assert session.execute(query).all() == [("a", "a"), ("b", "b")]


def test_a_new_pool_sees_the_migration_and_the_rows_written_before_it(db, session, models):
    Todo = models.Todo
    kept, gone = Todo(title="kept"), Todo(title="gone")
    session.add_all([kept, gone])
    session.commit()
    session.delete(gone)
    session.commit()
    before = datetime.now(timezone.utc)
    assert _rows(session, Todo.as_of(before), "title") == [("kept",)]

    # The table of an older release: its changes are recorded without an operation.
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN operation"))
    session.execute(text("ALTER TABLE chrononaut_activity DROP COLUMN transaction_id"))
    session.commit()
    db.engine.dispose()
    with pytest.raises(ChrononautException, match=r"docs/migration\.rst"):
        Todo.as_of(before)
    session.delete(session.get(Todo, kept.id))
    session.commit()
    after = datetime.now(timezone.utc)

    # The migration, then a new pool.
    session.execute(text("ALTER TABLE chrononaut_activity ADD COLUMN operation text"))
    session.execute(text("ALTER TABLE chrononaut_activity ADD COLUMN transaction_id bigint"))
    session.execute(
        text(f"CREATE INDEX {INDEX} ON chrononaut_activity (table_name) WHERE operation IS NULL")
    )
    session.commit()
    db.engine.dispose()
    assert _rows(session, Todo.as_of(before), "title") == [("kept",)]
    assert _rows(session, Todo.as_of(after), "title") == []


# -- the examples of docs/time-travel.rst ---------------------------------------------


def test_the_report_example(session, models):
    Todo = models.Todo
    session.add_all(
        [
            Todo(title="late", due_at=datetime(2030, 1, 2, tzinfo=timezone.utc)),
            Todo(title="soon", due_at=datetime(2030, 1, 1, tzinfo=timezone.utc)),
            Todo(title="done", done=True),
        ]
    )
    session.commit()
    at = _changed_of_last_commit(session, models)
    for todo in session.scalars(select(Todo)):
        todo.done = True
    session.commit()

    report = _snippet("time_travel_report").open_todos_at
    assert report(session, Todo, at) == (2, ["soon", "late"])
    assert report(session, Todo, datetime.now(timezone.utc)) == (0, [])


def test_the_pages_example(session, models):
    Todo = models.Todo
    session.add_all([Todo(id=number, title=str(number)) for number in range(1, 121)])
    session.commit()
    at = _changed_of_last_commit(session, models)
    session.execute(text("DELETE FROM todo WHERE id > 100"))  # unrecorded: history stays
    session.commit()

    pages = _snippet("time_travel_page").every_page_at(session, Todo, at)
    assert [len(page) for page in pages] == [50, 50, 20]
    assert [row.id for page in pages for row in page] == list(range(1, 121))


def test_the_join_example(session, models):
    Author, Book = models.Author, models.Book
    ann = Author(name="Ann")
    session.add_all([ann, Book(title="Dune", author=ann), Book(title="Emma", author=ann)])
    session.commit()
    at = _changed_of_last_commit(session, models)
    ann.name = "Ann B."
    session.commit()

    join = _snippet("time_travel_join").books_with_their_authors_at
    assert join(session, Book, Author, at) == [("Dune", "Ann"), ("Emma", "Ann")]
    now = datetime.now(timezone.utc)
    assert join(session, Book, Author, now) == [("Dune", "Ann B."), ("Emma", "Ann B.")]


def test_the_changes_example(session, models):
    Todo = models.Todo
    kept, dropped = Todo(title="kept"), Todo(title="dropped")
    session.add_all([kept, dropped])
    session.commit()
    start = _changed_of_last_commit(session, models)
    kept.title = "kept, changed"
    session.delete(dropped)
    session.add(Todo(title="new"))
    session.commit()
    end = _changed_of_last_commit(session, models)

    changes = _snippet("time_travel_changes")
    assert changes.changes_by_operation(session, Todo, start, end) == {
        "insert": 1,
        "update": 1,
        "delete": 1,
    }
    assert [(row.id, row.title) for row in changes.deleted_between(session, Todo, start, end)] == [
        (dropped.id, "dropped")
    ]
