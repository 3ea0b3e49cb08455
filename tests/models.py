"""The models the tests use, in the two declaration styles applications use.

``define_models(db, "classic")`` declares them with ``db.Column``;
``define_models(db, "typed")`` with ``Mapped[...]`` and ``mapped_column``. Both must
behave the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Enum, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chrononaut import RecordChanges, Versioned, VersionedSQLAlchemy

MODEL_STYLES = ("classic", "typed")


class Priority(enum.Enum):
    LOW = 1
    HIGH = 2


@dataclass
class Models:
    """The model classes of one test, by role."""

    Todo: Any  # tracked, hidden ("secret") and untracked ("starred") columns
    User: Any  # the user guide's example: hidden password, untracked login_count
    Author: Any  # one side of a many-to-one / one-to-many pair
    Book: Any  # many-to-one to Author, many-to-many to Tag
    Tag: Any
    Shelf: Any  # one-to-many to Item without a backref
    Item: Any
    Animal: Any  # joined-table inheritance base
    Dog: Any  # joined-table subclass
    Cat: Any  # single-table subclass
    Translation: Any  # composite primary key
    Country: Any  # text primary key not named id
    Gadget: Any  # attribute names differ from column names
    Note: Any  # RecordChanges
    Legacy: Any  # 0.1-era class attributes


def define_models(db: VersionedSQLAlchemy, style: str) -> Models:
    """Declare the test models on ``db`` in ``style`` ("classic" or "typed")."""
    if style == "classic":
        return _classic(db)
    if style == "typed":
        return _typed(db)
    raise ValueError(style)


def _classic(db: VersionedSQLAlchemy) -> Models:
    book_tag = Table(
        "book_tag",
        db.metadata,
        Column("book_id", ForeignKey("book.id"), primary_key=True),
        Column("tag_id", ForeignKey("tag.id"), primary_key=True),
    )

    class Todo(db.Model, Versioned):
        __tablename__ = "todo"
        __chrononaut_untracked__ = ["starred"]
        __chrononaut_hidden__ = ["secret"]
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String(80))
        text = db.Column(db.Text)
        done = db.Column(db.Boolean, default=False)
        priority = db.Column(db.Enum(Priority))
        due_at = db.Column(db.DateTime(timezone=True))
        starred = db.Column(db.Boolean, default=False)
        secret = db.Column(db.Text)

    class User(db.Model, Versioned):
        __tablename__ = "appuser"
        __chrononaut_untracked__ = ["login_count"]
        __chrononaut_hidden__ = ["password"]
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(80))
        email = db.Column(db.String(255), unique=True)
        password = db.Column(db.Text)
        login_count = db.Column(db.Integer, default=0)

    class Author(db.Model, Versioned):
        __tablename__ = "author"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(80))
        books = relationship("Book", back_populates="author")

    class Book(db.Model, Versioned):
        __tablename__ = "book"
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String(80))
        author_id = db.Column(db.Integer, db.ForeignKey("author.id"))
        author = relationship("Author", back_populates="books")
        tags = relationship("Tag", secondary=book_tag)

    class Tag(db.Model, Versioned):
        __tablename__ = "tag"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40))

    class Shelf(db.Model, Versioned):
        __tablename__ = "shelf"
        id = db.Column(db.Integer, primary_key=True)
        items = relationship("Item", cascade="all, delete-orphan")

    class Item(db.Model, Versioned):
        __tablename__ = "item"
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40))
        shelf_id = db.Column(db.Integer, db.ForeignKey("shelf.id"))

    class Animal(db.Model, Versioned):
        __tablename__ = "animal"
        id = db.Column(db.Integer, primary_key=True)
        kind = db.Column(db.String(20))
        name = db.Column(db.String(40))
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "animal"}

    class Dog(Animal):
        __tablename__ = "dog"
        id = db.Column(db.Integer, db.ForeignKey("animal.id"), primary_key=True)
        breed = db.Column(db.String(40))
        __mapper_args__ = {"polymorphic_identity": "dog"}

    class Cat(Animal):
        indoor = db.Column(db.Boolean)
        __mapper_args__ = {"polymorphic_identity": "cat"}

    class Translation(db.Model, Versioned):
        __tablename__ = "translation"
        locale = db.Column(db.String(10), primary_key=True)
        slug = db.Column(db.String(40), primary_key=True)
        text = db.Column(db.Text)

    class Country(db.Model, Versioned):
        __tablename__ = "country"
        code = db.Column(db.String(2), primary_key=True)
        name = db.Column(db.String(80))

    class Gadget(db.Model, Versioned):
        __tablename__ = "gadget"
        gadget_id = db.Column("id", db.Integer, primary_key=True)
        display_name = db.Column("DisplayName", db.String(80))

    class Note(db.Model, RecordChanges):
        __tablename__ = "note"
        id = db.Column(db.Integer, primary_key=True)
        body = db.Column(db.Text)

    class Legacy(db.Model, Versioned):
        __tablename__ = "legacy"
        __chrononaut_tablename__ = "legacy_old"
        __chrononaut_copy_validators__ = True
        __chrononaut_disable_indices__ = ["name"]
        id = db.Column(db.Integer, primary_key=True)
        name = db.Column(db.String(40), index=True)

    return Models(**{name: value for name, value in locals().items() if name in _FIELDS})


def _typed(db: VersionedSQLAlchemy) -> Models:
    book_tag = Table(
        "book_tag",
        db.metadata,
        Column("book_id", ForeignKey("book.id"), primary_key=True),
        Column("tag_id", ForeignKey("tag.id"), primary_key=True),
    )

    class Todo(db.Model, Versioned):
        __tablename__ = "todo"
        __chrononaut_untracked__ = ["starred"]
        __chrononaut_hidden__ = ["secret"]
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column(String(80))
        text: Mapped[str | None] = mapped_column(Text)
        done: Mapped[bool | None] = mapped_column(default=False)
        priority: Mapped[Priority | None] = mapped_column(Enum(Priority))
        due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
        starred: Mapped[bool | None] = mapped_column(default=False)
        secret: Mapped[str | None] = mapped_column(Text)

    class User(db.Model, Versioned):
        __tablename__ = "appuser"
        __chrononaut_untracked__ = ["login_count"]
        __chrononaut_hidden__ = ["password"]
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(String(80))
        email: Mapped[str | None] = mapped_column(String(255), unique=True)
        password: Mapped[str | None] = mapped_column(Text)
        login_count: Mapped[int | None] = mapped_column(default=0)

    class Author(db.Model, Versioned):
        __tablename__ = "author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(String(80))
        books: Mapped[list[Book]] = relationship(back_populates="author")

    class Book(db.Model, Versioned):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column(String(80))
        author_id: Mapped[int | None] = mapped_column(ForeignKey("author.id"))
        author: Mapped[Author | None] = relationship(back_populates="books")
        tags: Mapped[list[Tag]] = relationship(secondary=book_tag)

    class Tag(db.Model, Versioned):
        __tablename__ = "tag"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(String(40))

    class Shelf(db.Model, Versioned):
        __tablename__ = "shelf"
        id: Mapped[int] = mapped_column(primary_key=True)
        items: Mapped[list[Item]] = relationship(cascade="all, delete-orphan")

    class Item(db.Model, Versioned):
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(String(40))
        shelf_id: Mapped[int | None] = mapped_column(ForeignKey("shelf.id"))

    class Animal(db.Model, Versioned):
        __tablename__ = "animal"
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(String(20))
        name: Mapped[str | None] = mapped_column(String(40))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}

    class Dog(Animal):
        __tablename__ = "dog"
        id: Mapped[int] = mapped_column(ForeignKey("animal.id"), primary_key=True)
        breed: Mapped[str | None] = mapped_column(String(40))
        __mapper_args__ = {"polymorphic_identity": "dog"}

    class Cat(Animal):
        indoor: Mapped[bool | None] = mapped_column(nullable=True)
        __mapper_args__ = {"polymorphic_identity": "cat"}

    class Translation(db.Model, Versioned):
        __tablename__ = "translation"
        locale: Mapped[str] = mapped_column(String(10), primary_key=True)
        slug: Mapped[str] = mapped_column(String(40), primary_key=True)
        text: Mapped[str | None] = mapped_column(Text)

    class Country(db.Model, Versioned):
        __tablename__ = "country"
        code: Mapped[str] = mapped_column(String(2), primary_key=True)
        name: Mapped[str | None] = mapped_column(String(80))

    class Gadget(db.Model, Versioned):
        __tablename__ = "gadget"
        gadget_id: Mapped[int] = mapped_column("id", Integer, primary_key=True)
        display_name: Mapped[str | None] = mapped_column("DisplayName", String(80))

    class Note(db.Model, RecordChanges):
        __tablename__ = "note"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[str | None] = mapped_column(Text)

    class Legacy(db.Model, Versioned):
        __tablename__ = "legacy"
        __chrononaut_tablename__ = "legacy_old"
        __chrononaut_copy_validators__ = True
        __chrononaut_disable_indices__ = ["name"]
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(String(40), index=True)

    return Models(**{name: value for name, value in locals().items() if name in _FIELDS})


_FIELDS = frozenset(Models.__dataclass_fields__)
