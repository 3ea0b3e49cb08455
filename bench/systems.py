"""The systems under test: one benchmark model, versioned by each library in its own way.

Each system lives in its own worker process (see :mod:`bench.worker`): SQLAlchemy-Continuum
and PostgreSQL-Audit both read ``__versioned__`` from every mapped class and hook the
global mapper events, so they cannot share a process with each other or with us.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, String, Text, desc, select, text
from sqlalchemy.orm import Session, configure_mappers


def _article_columns(db: SQLAlchemy) -> dict[str, Any]:
    return {
        "__tablename__": "article",
        "id": db.Column(Integer, primary_key=True),
        "title": db.Column(String(200), nullable=False),
        "body": db.Column(Text),
        "score": db.Column(Integer, nullable=False),
        "published_at": db.Column(DateTime(timezone=True)),
    }


class System:
    """Plain Flask-SQLAlchemy: no history at all, the floor the others are compared to."""

    name = "plain"
    label = "Flask-SQLAlchemy (no history)"
    keeps_history = False

    def __init__(self) -> None:
        self.db = self.make_extension()
        self.Article: Any = type("Article", self.model_bases(), self.model_attributes())
        configure_mappers()

    def make_extension(self) -> SQLAlchemy:
        return SQLAlchemy()

    def model_bases(self) -> tuple[type, ...]:
        return (self.db.Model,)

    def model_attributes(self) -> dict[str, Any]:
        return _article_columns(self.db)

    def create_schema(self) -> None:
        self.db.create_all()

    def versions(self, session: Session, obj: Any) -> list[Any]:
        raise NotImplementedError

    def version_at(self, session: Session, obj: Any, at: datetime) -> Any:
        raise NotImplementedError

    def grow_history(self, session: Session, rows: int, first_id: int) -> None:
        """Add ``rows`` history rows of made-up objects (ids from ``first_id`` on) in SQL."""
        raise NotImplementedError

    def history_rows(self, session: Session) -> int:
        raise NotImplementedError


class Chrononaut(System):
    name = "chrononaut"
    label = "Chrononaut"
    keeps_history = True

    def make_extension(self) -> SQLAlchemy:
        from chrononaut import VersionedSQLAlchemy

        return VersionedSQLAlchemy()

    def model_bases(self) -> tuple[type, ...]:
        from chrononaut import Versioned

        return (self.db.Model, Versioned)

    def versions(self, session: Session, obj: Any) -> list[Any]:
        return obj.versions()  # type: ignore[no-any-return]

    def version_at(self, session: Session, obj: Any, at: datetime) -> Any:
        return obj.version_at(at)

    def grow_history(self, session: Session, rows: int, first_id: int) -> None:
        # Six snapshots per made-up object, one second apart, as W1 and W2 write them.
        session.execute(
            text(
                """
                INSERT INTO chrononaut_activity
                    (table_name, changed, version, key, data, user_info, extra_info)
                SELECT 'article',
                       now() - interval '30 days' + g * interval '1 second',
                       g % 6,
                       jsonb_build_object('id', :first_id + g / 6),
                       jsonb_build_object('id', :first_id + g / 6, 'title', 'title ' || g,
                                          'body', repeat('x', 100), 'score', g,
                                          'published_at', '2024-01-01T00:00:00+00:00',
                                          'version', g % 6),
                       '{"user_id": null, "remote_addr": null}',
                       '{}'
                FROM generate_series(0, :rows - 1) AS g
                """
            ),
            {"rows": rows, "first_id": first_id},
        )

    def history_rows(self, session: Session) -> int:
        return session.execute(text("SELECT count(*) FROM chrononaut_activity")).scalar_one()


class Continuum(System):
    name = "continuum"
    label = "SQLAlchemy-Continuum"
    keeps_history = True

    def make_extension(self) -> SQLAlchemy:
        from sqlalchemy_continuum import make_versioned

        make_versioned(user_cls=None)
        return SQLAlchemy()

    def model_attributes(self) -> dict[str, Any]:
        return {**_article_columns(self.db), "__versioned__": {}}

    def versions(self, session: Session, obj: Any) -> list[Any]:
        return list(obj.versions)

    def version_at(self, session: Session, obj: Any, at: datetime) -> Any:
        from sqlalchemy_continuum import transaction_class, version_class

        version = version_class(self.Article)
        transaction = transaction_class(self.Article)
        # Continuum stores naive UTC times.
        naive_at = at.replace(tzinfo=None)
        return session.scalars(
            select(version)
            .join(transaction, version.transaction_id == transaction.id)
            .where(version.id == obj.id, transaction.issued_at <= naive_at)
            .order_by(desc(version.transaction_id))
            .limit(1)
        ).first()

    def grow_history(self, session: Session, rows: int, first_id: int) -> None:
        # One transaction per version, with ids far above the sequence's.
        session.execute(
            text(
                """
                INSERT INTO transaction (id, issued_at)
                SELECT 1000000000 + t, now() - interval '30 days' + t * interval '1 second'
                FROM generate_series(0, :rows - 1) AS t
                """
            ),
            {"rows": rows},
        )
        session.execute(
            text(
                """
                INSERT INTO article_version
                    (id, title, body, score, published_at, transaction_id,
                     end_transaction_id, operation_type)
                SELECT :first_id + g / 6, 'title ' || g, repeat('x', 100), g,
                       '2024-01-01T00:00:00+00:00', 1000000000 + g,
                       CASE WHEN g % 6 < 5 THEN 1000000000 + g + 1 END,
                       CASE WHEN g % 6 = 0 THEN 0 ELSE 1 END
                FROM generate_series(0, :rows - 1) AS g
                """
            ),
            {"rows": rows, "first_id": first_id},
        )

    def history_rows(self, session: Session) -> int:
        return session.execute(text("SELECT count(*) FROM article_version")).scalar_one()


class PostgresqlAudit(System):
    name = "postgresql-audit"
    label = "PostgreSQL-Audit"
    keeps_history = True

    def make_extension(self) -> SQLAlchemy:
        from postgresql_audit import VersioningManager

        db = SQLAlchemy()
        # The base manager: the Flask one insists on an actor model and on Flask-Login.
        self.manager = VersioningManager()
        self.manager.init(db.Model)
        return db

    def model_attributes(self) -> dict[str, Any]:
        return {**_article_columns(self.db), "__versioned__": {}}

    def create_schema(self) -> None:
        # The activity table's DDL creates the audit_table() function that the article
        # table's own after-create hook calls, so it must exist first.
        tables = [self.manager.transaction_cls.__table__, self.manager.activity_cls.__table__]
        self.db.metadata.create_all(self.db.engine, tables=tables)
        self.db.create_all()

    def _activity_of(self, obj: Any) -> Any:
        activity = self.manager.activity_cls
        return select(activity).where(
            activity.table_name == "article", activity.data["id"].astext == str(obj.id)
        )

    def versions(self, session: Session, obj: Any) -> list[Any]:
        activity = self.manager.activity_cls
        return list(session.scalars(self._activity_of(obj).order_by(activity.id)))

    def version_at(self, session: Session, obj: Any, at: datetime) -> Any:
        activity = self.manager.activity_cls
        # issued_at is the database's local time without a zone; the server runs in UTC.
        naive_at = at.replace(tzinfo=None)
        return session.scalars(
            self._activity_of(obj)
            .where(activity.issued_at <= naive_at)
            .order_by(activity.id.desc())
            .limit(1)
        ).first()

    def grow_history(self, session: Session, rows: int, first_id: int) -> None:
        session.execute(
            text(
                """
                INSERT INTO activity (table_name, issued_at, verb, old_data, changed_data)
                SELECT 'article',
                       now() - interval '30 days' + g * interval '1 second',
                       CASE WHEN g % 6 = 0 THEN 'insert' ELSE 'update' END,
                       CASE WHEN g % 6 = 0 THEN '{}'::jsonb
                            ELSE jsonb_build_object('id', :first_id + g / 6,
                                                    'title', 'title ' || (g - 1),
                                                    'body', repeat('x', 100),
                                                    'score', g - 1) END,
                       CASE WHEN g % 6 = 0
                            THEN jsonb_build_object('id', :first_id + g / 6,
                                                    'title', 'title ' || g,
                                                    'body', repeat('x', 100), 'score', g)
                            ELSE jsonb_build_object('title', 'title ' || g, 'score', g) END
                FROM generate_series(0, :rows - 1) AS g
                """
            ),
            {"rows": rows, "first_id": first_id},
        )

    def history_rows(self, session: Session) -> int:
        return session.execute(text("SELECT count(*) FROM activity")).scalar_one()


SYSTEMS: dict[str, type[System]] = {
    system.name: system for system in (System, Chrononaut, Continuum, PostgresqlAudit)
}
