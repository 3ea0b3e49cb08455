"""The Flask extension: a Flask-SQLAlchemy ``SQLAlchemy`` that versions its models."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import click
from flask.cli import AppGroup

from chrononaut._compat import SessionFactoryHook
from chrononaut.capture import recorder, triggers
from chrononaut.capture.change_info import DEFAULT_USER_ID_ATTRIBUTE, USER_ID_ATTRIBUTE
from chrononaut.capture.session import (
    HISTORY_READ_BIND_CONFIG,
    VersionedSession,
    check_history_read_bind,
)
from chrononaut.capture.undo_transaction import RevertedTransaction, revert_transaction
from chrononaut.capture.versioned import Versioned
from chrononaut.exceptions import ChrononautException, InvalidArgumentError
from chrononaut.history.activity import Activity, activity_factory
from chrononaut.history.partitions import (
    PARTITIONS_CONFIG,
    interval_from_setting,
    partition_activity_table,
)
from chrononaut.history.past import PastSession, open_past_session

if TYPE_CHECKING:
    from datetime import datetime

    from flask import Flask
    from sqlalchemy.orm import registry

#: The module of the ``flask chrononaut`` commands, imported when one of them runs.
_CLI_MODULE = "chrononaut.interfaces.cli"


class _CommandsOnDemand(AppGroup):
    """The ``flask chrononaut`` group, whose commands are imported only when the
    command line asks for them, so that a web process never loads them (click's
    lazily loaded subcommands)."""

    def _commands(self) -> click.Group:
        group: click.Group = importlib.import_module(_CLI_MODULE).chrononaut_cli
        return group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._commands().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._commands().get_command(ctx, cmd_name)


class VersionedSQLAlchemy(SessionFactoryHook):
    """Flask-SQLAlchemy's extension with history for :class:`~chrononaut.Versioned` models.

    It takes the same arguments as :class:`flask_sqlalchemy.SQLAlchemy`, defines the
    ``chrononaut_activity`` model on ``db.Model``'s metadata, and makes every session a
    :class:`~chrononaut.VersionedSession`.

    :param app: the Flask application, or ``None`` to call :meth:`init_app` later.
    """

    def __init__(self, app: Flask | None = None, **kwargs: Any) -> None:
        # The app is registered after the activity table is defined, because its
        # settings choose the table's layout.
        super().__init__(None, **kwargs)
        activity_class = activity_factory(self.Model)
        # The original exposed the class here; applications still look for it.
        self.metadata._activity_cls = activity_class  # type: ignore[attr-defined]
        self._activity_class = activity_class
        recorder.listen(activity_class)
        triggers.listen()
        if app is not None:
            self.init_app(app)

    @property
    def activity_cls(self) -> type[Activity]:
        """The mapped model of the ``chrononaut_activity`` table."""
        return self._activity_class

    def revert_transaction(self, transaction_id: int) -> RevertedTransaction:
        """Undo every change that one database transaction recorded, in ``db.session``.

        Objects it changed are set back to their state before it, objects it inserted
        are deleted, and objects it deleted are brought back under their old keys (as
        :meth:`~chrononaut.capture.undo.HistoryUndo.undelete` does). The changes are
        flushed, so that they reach the database in an order its foreign keys accept
        (first the objects set back and brought back, then the deletes), and recorded
        then, each with ``extra_info["reverted_transaction"]`` (and ``reverted_to`` or
        ``undeleted``) next to the change info of the open blocks: open
        :func:`~chrononaut.rationale` around the call, not only around the commit. The
        caller commits, or rolls back to drop the undo.

        The transaction is refused, before anything is changed, when a later
        transaction recorded a change of one of its objects (undo that one first), or
        an object it inserted has others attached to it since. Hidden attributes, whose
        values were never stored, keep their values or come back empty as in
        :meth:`~chrononaut.capture.undo.HistoryUndo.revert_to` and ``undelete``.

        It is a method of the extension, not of a model, because one transaction
        changes objects of any number of models.

        :param transaction_id: the id a snapshot gives as
            :attr:`~chrononaut.history.snapshot.HistorySnapshot.chrononaut_transaction_id`.
        :return: the objects set back, brought back and deleted.
        :raises InvalidArgumentError: the id is not an integer, no change was recorded
            by that transaction, or it is the session's own, still open one.
        :raises ChrononautException: a later change or an attached object stands in the
            way, an object cannot be set back or brought back, or the activity table
            lacks the time-travel columns.

        .. versionadded:: 1.0
        """
        return revert_transaction(self.session(), self.Model, transaction_id)

    def as_of(self, at: datetime) -> PastSession:
        """Open a read-only session in which versioned models read as they were at ``at``.

        Queries, ``get`` and relationship loads of :class:`~chrononaut.Versioned`
        models return their state at that moment; other models read their live rows.
        The session has its own connection and never touches :attr:`session`. See
        :doc:`/past-session`.

        .. versionadded:: 1.0

        :param at: the moment; a naive datetime is taken to be UTC, and a change made
            exactly at ``at`` is included.
        :return: a :class:`~chrononaut.history.past.PastSession`; close it, or use it as
            a context manager.
        :raises InvalidArgumentError: ``at`` is not a datetime.
        :raises ChrononautException: the activity table lacks the time-travel columns,
            two tables would have views of the same name, or the engine has a
            ``schema_translate_map``.
        """
        activity_table = self._activity_class.__table__
        engine = self.engines[activity_table.metadata.info.get("bind_key")]
        return open_past_session(engine, self._activity_class, at)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``, set the ``CHRONONAUT_*`` config defaults
        and add the ``flask chrononaut`` commands.

        :raises RuntimeError: an extension is already registered on ``app``.
        :raises ChrononautException: ``CHRONONAUT_HISTORY_READ_BIND`` names no bind key
            of ``SQLALCHEMY_BINDS``; ``CHRONONAUT_ACTIVITY_PARTITIONS`` is not a known
            interval, or differs from that of another app of the extension.
        """
        app.config.setdefault(HISTORY_READ_BIND_CONFIG, None)
        check_history_read_bind(app.config)
        interval = interval_from_setting(app.config.setdefault(PARTITIONS_CONFIG, None))
        if interval is not None:
            partition_activity_table(self._activity_class.__table__, interval)
        app.config.setdefault("CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO", False)
        app.config.setdefault("CHRONONAUT_EXTRA_CHANGE_INFO_FUNC", None)
        app.config.setdefault(USER_ID_ATTRIBUTE, DEFAULT_USER_ID_ATTRIBUTE)
        app.config.setdefault(triggers.SAFETY_NET_CONFIG, False)
        super().init_app(app)
        app.extensions["chrononaut"] = self
        app.cli.add_command(
            _CommandsOnDemand("chrononaut", help="Inspect and migrate Chrononaut history.")
        )

    def session_factory_options(self, options: dict[str, Any]) -> None:
        """Make every session of the extension a :class:`~chrononaut.VersionedSession`.

        :raises ChrononautException: ``session_options`` name a session class that is
            not a :class:`~chrononaut.VersionedSession`, whose changes would not be
            recorded.
        """
        session_class = options.setdefault("class_", VersionedSession)
        if not issubclass(session_class, VersionedSession):
            raise InvalidArgumentError(
                f"The session class {session_class.__name__} must subclass "
                "chrononaut.VersionedSession, or its changes would not be versioned."
            )

    def install_safety_net(self, *models: type[Versioned]) -> None:
        """Install the safety net (database triggers that record the writes the session
        does not see) on the tables of ``models``, or of every versioned model of
        ``db.Model``; run it again after their columns change. See
        :doc:`/safety-net`.

        .. versionadded:: 1.0

        :param models: versioned models, each with a table of its own.
        :raises ChrononautException: ``CHRONONAUT_SAFETY_NET`` is off, or a model cannot
            be netted (see :func:`chrononaut.capture.triggers.install_safety_net`).
        """
        with self.engine.begin() as connection:
            triggers.install_safety_net(connection, self._netted(models))

    def remove_safety_net(self, *models: type[Versioned]) -> None:
        """Remove the safety net from the tables of ``models``, or of every versioned
        model of ``db.Model``; tables without it are left as they are.

        .. versionadded:: 1.0
        """
        with self.engine.begin() as connection:
            triggers.remove_safety_net(connection, self._netted(models))

    def _netted(self, models: Iterable[type[Versioned]]) -> list[type[Versioned]]:
        """Return ``models``, or every versioned model of ``db.Model``.

        :raises ChrononautException: a model is stored under a ``__bind_key__``: its
            history goes to the activity table of the default database, which triggers
            in the model's own database cannot write.
        """
        chosen = list(models)
        if not chosen:
            model_registry: registry = cast(Any, self.Model).registry
            chosen = [
                mapper.class_
                for mapper in model_registry.mappers
                if issubclass(mapper.class_, Versioned)
            ]
        for model in chosen:
            table = getattr(model, "__table__", None)
            bind_key = None if table is None else table.metadata.info.get("bind_key")
            if bind_key is not None:
                raise ChrononautException(
                    f"{model.__name__} is stored under the bind key {bind_key!r}, its "
                    "history in the default database: the safety net's triggers can only "
                    "write history in the table's own database. Leave the model out."
                )
        return chosen
