"""The demo's models: people who sign in, the documents they edit, and a shop's orders."""

from __future__ import annotations

import enum
from decimal import Decimal

from flask_login import UserMixin
from sqlalchemy import Enum, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chrononaut import Versioned, VersionedSQLAlchemy


class Base(DeclarativeBase):
    pass


db = VersionedSQLAlchemy(model_class=Base)

# mypy sees ``db.Model`` as an attribute, not a class, hence the ignores on the bases.


class Person(db.Model, Versioned, UserMixin):  # type: ignore[name-defined, misc]
    """Someone who edits documents; the password hash is hidden, logins untracked."""

    __tablename__ = "demo_person"
    __chrononaut_hidden__ = ("password_hash",)
    __chrononaut_untracked__ = ("login_count",)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    password_hash: Mapped[str] = mapped_column(Text)
    login_count: Mapped[int] = mapped_column(default=0)


class Document(db.Model, Versioned):  # type: ignore[name-defined, misc]
    """A document with a title, a body and a publishing status."""

    __tablename__ = "demo_document"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("demo_person.id"))


class OrderStatus(enum.Enum):
    """Where an order is; history stores a status as ``"OrderStatus.PAID"``."""

    NEW = "new"
    PAID = "paid"
    SHIPPED = "shipped"


class Order(db.Model, Versioned):  # type: ignore[name-defined, misc]
    """A shop's order: a customer, a total and a status that the clerk moves along."""

    __tablename__ = "demo_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(200))
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[OrderStatus] = mapped_column(Enum(OrderStatus), default=OrderStatus.NEW)
