"""``__chrononaut_hidden__`` and ``__chrononaut_untracked__``: what they may name, on a
class or on one instance, and how history reads columns stored on one side only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest
from sqlalchemy import ForeignKey, Text, insert, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chrononaut import ChrononautException, Versioned
from chrononaut.exceptions import HiddenAttributeError, UntrackedAttributeError
from chrononaut.interfaces.timeline import object_timeline
from chrononaut.unsafe import suppress_versioning
from chrononaut.views import history_blueprint
from tests.activity import activity_rows, rows_of
from tests.models import MODEL_STYLES

UTC = timezone.utc
HIDDEN = "__chrononaut_hidden__"
UNTRACKED = "__chrononaut_untracked__"
UNSET = object()


def _vault(db: Any, style: str, hidden: Any = UNSET, untracked: Any = UNSET) -> Any:
    """Declare a versioned ``Vault``: ``id``, ``title``, ``pin`` (mapped to the column
    ``pin_col``) and a many-to-one ``owner``, with the declarations given."""

    class Owner(db.Model):
        __tablename__ = "owner"
        id = db.Column(db.Integer, primary_key=True)

    namespace: dict[str, Any] = {"__tablename__": "vault"}
    if hidden is not UNSET:
        namespace[HIDDEN] = hidden
    if untracked is not UNSET:
        namespace[UNTRACKED] = untracked
    if style == "classic":
        namespace.update(
            id=db.Column(db.Integer, primary_key=True),
            title=db.Column(db.Text),
            pin=db.Column("pin_col", db.Text),
            owner_id=db.Column(db.Integer, db.ForeignKey("owner.id")),
            owner=relationship(Owner),
        )
    else:
        namespace["__annotations__"] = {
            "id": Mapped[int],
            "title": Mapped[Optional[str]],  # noqa: UP045 (evaluated by SQLAlchemy)
            "pin": Mapped[Optional[str]],  # noqa: UP045
            "owner_id": Mapped[Optional[int]],  # noqa: UP045
            "owner": Mapped[Optional[Owner]],  # noqa: UP045
        }
        namespace.update(
            id=mapped_column(primary_key=True),
            title=mapped_column(Text),
            pin=mapped_column("pin_col", Text),
            owner_id=mapped_column(ForeignKey("owner.id")),
            owner=relationship(),
        )
    return type("Vault", (db.Model, Versioned), namespace)


MISDECLARATIONS = {
    "a bare string": (
        {"hidden": "pin"},
        "Vault.__chrononaut_hidden__ must be a list, tuple or set of attribute names, "
        "not str: 'pin'",
    ),
    "a bare string untracked": (
        {"untracked": "title"},
        "Vault.__chrononaut_untracked__ must be a list, tuple or set of attribute names, "
        "not str: 'title'",
    ),
    "a dict": (
        {"hidden": {"pin": True}},
        "Vault.__chrononaut_hidden__ must be a list, tuple or set of attribute names, "
        "not dict: {'pin': True}",
    ),
    "None": (
        {"hidden": None},
        "Vault.__chrononaut_hidden__ must be a list, tuple or set of attribute names, "
        "not NoneType: None",
    ),
    "an entry that is not a string": (
        {"hidden": ["pin", 3]},
        "Vault.__chrononaut_hidden__: 3 is not an attribute name",
    ),
    "the column name instead of the attribute name": (
        {"hidden": ["pin_col"]},
        "Vault.__chrononaut_hidden__: 'pin_col' is the column of the attribute 'pin'; "
        "name the attribute",
    ),
    "a hidden primary key": (
        {"hidden": ["id"]},
        "Vault.__chrononaut_hidden__: 'id' is part of the primary key",
    ),
    "an untracked primary key": (
        {"untracked": ["id"]},
        "Vault.__chrononaut_untracked__: 'id' is part of the primary key",
    ),
    "a name that matches nothing": (
        {"hidden": ["pni"]},
        "Vault.__chrononaut_hidden__: 'pni' is not a column attribute of Vault",
    ),
    "a relationship": (
        {"untracked": ["owner"]},
        "Vault.__chrononaut_untracked__: 'owner' is not a column attribute of Vault",
    ),
    "the version, hidden": (
        {"hidden": ["version"]},
        "Vault.__chrononaut_hidden__: 'version' is always recorded",
    ),
    "the version, untracked": (
        {"untracked": ["version"]},
        "Vault.__chrononaut_untracked__: 'version' is always recorded",
    ),
    "a name in both lists": (
        {"hidden": ["pin"], "untracked": ["title", "pin"]},
        "Vault: 'pin' is in both __chrononaut_hidden__ and __chrononaut_untracked__",
    ),
}


@pytest.mark.parametrize("style", MODEL_STYLES)
@pytest.mark.parametrize("case", sorted(MISDECLARATIONS))
def test_a_misdeclaration_fails_when_the_model_is_mapped(db, style, case):
    declarations, message = MISDECLARATIONS[case]

    with pytest.raises(ChrononautException, match=f"^{re.escape(message)}"):
        _vault(db, style, **declarations)


@pytest.mark.parametrize("style", MODEL_STYLES)
@pytest.mark.parametrize("kind", [list, tuple, set, frozenset])
def test_lists_tuples_and_sets_are_accepted(db, style, kind):
    vault_class = _vault(db, style, hidden=kind(["pin"]), untracked=kind(["owner_id"]))
    db.create_all()
    vault = vault_class(title="t", pin="1234")
    db.session.add(vault)
    db.session.commit()
    vault.pin = "9876"
    db.session.commit()

    (first, second) = rows_of(db, "vault")
    assert first.data == {"id": vault.id, "title": "t", "version": 0}
    assert second.extra_info == {"hidden_cols_changed": ["pin"]}
    assert all("1234" not in str(row) and "9876" not in str(row) for row in activity_rows(db))


def _animals(db: Any, parent_hidden: list[str]) -> tuple[Any, Any, Any]:
    class Animal(db.Model, Versioned):
        __tablename__ = "beast"
        __chrononaut_hidden__ = parent_hidden
        id = db.Column(db.Integer, primary_key=True)
        kind = db.Column(db.String(20))
        chip = db.Column(db.Text)
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "beast"}

    class Dog(Animal):
        __tablename__ = "hound"
        id = db.Column(db.Integer, db.ForeignKey("beast.id"), primary_key=True)
        breed = db.Column(db.Text)
        __mapper_args__ = {"polymorphic_identity": "hound"}

    class Cat(Animal):
        indoor = db.Column(db.Boolean)
        __mapper_args__ = {"polymorphic_identity": "cat"}

    return Animal, Dog, Cat


def test_subclasses_that_add_columns_inherit_the_declaration(db):
    _, dog_class, cat_class = _animals(db, ["chip"])
    db.create_all()
    dog, cat = dog_class(breed="lab", chip="D-1"), cat_class(indoor=True, chip="C-1")
    db.session.add_all([dog, cat])
    db.session.commit()

    assert [row.data for row in activity_rows(db)] == [
        {"id": dog.id, "kind": "hound", "breed": "lab", "version": 0},
        {"id": cat.id, "kind": "cat", "indoor": True, "version": 0},
    ]
    assert all(row.extra_info == {"hidden_cols_changed": ["chip"]} for row in activity_rows(db))


def test_a_parent_may_not_name_a_column_only_its_subclass_has(db):
    with pytest.raises(ChrononautException, match="'breed' is not a column attribute of Animal"):
        _animals(db, ["breed"])


def test_a_subclass_that_redeclares_is_checked_by_its_own_name(db):
    class Parent(db.Model, Versioned):
        __tablename__ = "parent"
        id = db.Column(db.Integer, primary_key=True)
        kind = db.Column(db.String(20))
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "parent"}

    with pytest.raises(ChrononautException, match=r"^Child\.__chrononaut_hidden__ must be a list"):

        class Child(Parent):
            __chrononaut_hidden__ = "kind"
            __mapper_args__ = {"polymorphic_identity": "child"}


# -- declarations on one instance -----------------------------------------------------


def _todo(session: Any, models: Any, **values: Any) -> Any:
    todo = models.Todo(title="a", text="t", **values)
    session.add(todo)
    session.commit()
    return todo


def test_instance_untracked_applies_at_its_next_flush(db, session, models):
    todo = _todo(session, models)
    other = _todo(session, models)

    todo.__chrononaut_untracked__ = ["starred", "text"]
    todo.title = "b"
    other.title = "b"
    session.commit()
    todo.text = "changed while untracked"  # no version: text is untracked here
    session.commit()
    del todo.__chrononaut_untracked__
    todo.title = "c"
    session.commit()

    first, second, third = todo.versions()
    assert [snapshot.version for snapshot in todo.versions()] == [0, 1, 2]
    assert "text" not in second.chrononaut_data
    assert other.versions()[1].chrononaut_data["text"] == "t"  # the class is untouched
    assert todo.diff(first, second) == {"title": ("a", "b"), "text": ("t", None)}
    assert todo.diff(second, third) == {
        "title": ("b", "c"),
        "text": (None, "changed while untracked"),
    }
    assert todo.diff(first, third) == {
        "title": ("a", "c"),
        "text": ("t", "changed while untracked"),
    }
    with pytest.raises(UntrackedAttributeError, match="'text' is not stored in this snapshot"):
        second.text  # noqa: B018


def test_instance_untracked_may_track_a_column_the_class_leaves_untracked(db, session, models):
    todo = _todo(session, models, starred=True)

    todo.__chrononaut_untracked__ = []
    todo.title = "b"
    session.commit()

    first, second = todo.versions()
    assert second.chrononaut_data["starred"] is True
    assert todo.diff(first, second) == {"title": ("a", "b"), "starred": (None, True)}


def test_instance_hidden_applies_at_its_next_flush(db, session, models):
    todo = _todo(session, models, secret="s0")
    since = datetime.now(UTC)

    todo.__chrononaut_hidden__ = ["text"]
    todo.text = "private"
    todo.secret = "s1"  # still hidden: an instance hides more than its class, never less
    session.commit()

    first, second = todo.versions()
    assert second.chrononaut_data == {
        "id": todo.id,
        "title": "a",
        "done": False,
        "priority": None,
        "due_at": None,
        "version": 1,
    }
    assert second.chrononaut_extra_info == {"hidden_cols_changed": ["text", "secret"]}
    assert all("private" not in str(row) and "s1" not in str(row) for row in activity_rows(db))
    assert todo.diff(first, second) == {"text": ("t", None)}
    assert todo.diff(first, second, include_hidden=True) == {
        "text": (None, "private"),
        "secret": (None, "s1"),
    }
    assert todo.has_changed_since(since) is True
    with pytest.raises(HiddenAttributeError):
        second.text  # noqa: B018


def test_instance_declarations_apply_to_an_insert(db, session, models):
    todo = models.Todo(title="a", text="t", secret="s")
    todo.__chrononaut_untracked__ = ["text"]
    todo.__chrononaut_hidden__ = ["title"]
    session.add(todo)
    session.commit()

    (row,) = activity_rows(db)
    assert row.data == {
        "id": todo.id,
        "done": False,
        "starred": False,
        "priority": None,
        "due_at": None,
        "version": 0,
    }
    assert row.extra_info == {"hidden_cols_changed": ["title", "secret"]}


INSTANCE_MISDECLARATIONS = {
    "a bare string": (HIDDEN, "secret", "must be a list, tuple or set of attribute names"),
    "a name that matches nothing": (UNTRACKED, ["titel"], "'titel' is not a column attribute"),
    "a primary key": (HIDDEN, ["id"], "'id' is part of the primary key"),
    "the version": (UNTRACKED, ["version"], "'version' is always recorded"),
    "a name the class hides": (UNTRACKED, ["secret"], "'secret' is in both"),
}


@pytest.mark.parametrize("case", sorted(INSTANCE_MISDECLARATIONS))
def test_instance_declarations_are_checked_at_flush(db, session, models, case):
    attribute, value, message = INSTANCE_MISDECLARATIONS[case]
    todo = _todo(session, models, secret="s0")
    expected = f"^Todo instance {todo.id}[:,] .*{re.escape(message)}"

    setattr(todo, attribute, value)
    todo.title = "b"
    todo.secret = "s1"
    with pytest.raises(ChrononautException, match=expected):
        session.commit()
    session.rollback()

    assert session.scalars(select(models.Todo.title)).all() == ["a"]
    assert len(activity_rows(db)) == 1


# -- columns stored on one side only --------------------------------------------------


@pytest.fixture
def two_deployments(db, session, models):
    """A todo whose first snapshot was written while ``legacy`` was tracked and ``text``
    untracked, and whose second one after the model changed the other way round."""
    activity = db.activity_cls.__table__
    with suppress_versioning():
        todo = _todo(session, models)
    first = datetime.now(UTC) - timedelta(hours=2)
    session.execute(
        insert(activity),
        [
            {
                "table_name": "todo",
                "changed": first,
                "version": 0,
                "key": {"id": todo.id},
                "data": {"id": todo.id, "title": "a", "legacy": "x", "version": 0},
            },
            {
                "table_name": "todo",
                "changed": first + timedelta(hours=1),
                "version": 1,
                "key": {"id": todo.id},
                "data": {"id": todo.id, "title": "a", "text": "t", "version": 1},
            },
        ],
    )
    session.commit()
    return todo, first


def test_diffs_read_columns_stored_on_one_side_only(db, session, two_deployments):
    todo, first = two_deployments
    changes = {"legacy": ("x", None), "text": (None, "t")}

    assert todo.diff_versions(0, 1) == changes
    assert todo.diff_versions(0, 1, include_hidden=True) == changes
    assert todo.diff_timestamps(first) == changes
    assert todo.has_changed_since(first) is True
    assert todo.has_changed_since(first + timedelta(minutes=90)) is False
    assert [entry.changes for entry in object_timeline(session, type(todo), {"id": todo.id})][
        1
    ] == changes


def test_the_viewer_shows_columns_stored_on_one_side_only(app, db, session, two_deployments):
    todo, _ = two_deployments
    app.register_blueprint(history_blueprint(lambda: True), url_prefix="/history")

    response = app.test_client().get(f"/history/objects/Todo?key={todo.id}")

    page = " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())
    assert response.status_code == 200
    assert "legacy x — none" in page
    assert "text — none t" in page
