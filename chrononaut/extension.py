"""The Flask extension: a Flask-SQLAlchemy ``SQLAlchemy`` that versions its models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask_sqlalchemy import SQLAlchemy

from chrononaut import recorder
from chrononaut.cli import chrononaut_cli
from chrononaut.exceptions import ChrononautException
from chrononaut.models import activity_factory
from chrononaut.session import VersionedSession

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import sessionmaker


class VersionedSQLAlchemy(SQLAlchemy):
    """Flask-SQLAlchemy's extension with history for :class:`~chrononaut.Versioned` models.

    It takes the same arguments as :class:`flask_sqlalchemy.SQLAlchemy`, defines the
    ``chrononaut_activity`` model on ``db.Model``'s metadata, and makes every session a
    :class:`~chrononaut.VersionedSession`.

    :param app: the Flask application, or ``None`` to call :meth:`init_app` later.
    """

    def __init__(self, app: Flask | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        activity_class = activity_factory(self.Model)
        # The original exposed the class here; applications still look for it.
        self.metadata._activity_cls = activity_class  # type: ignore[attr-defined]
        self._activity_class = activity_class
        recorder.listen(activity_class)

    @property
    def activity_cls(self) -> type[Any]:
        """The mapped model of the ``chrononaut_activity`` table."""
        return self._activity_class

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app`` and set the ``CHRONONAUT_*`` config defaults.

        :raises RuntimeError: an extension is already registered on ``app``.
        """
        app.config.setdefault("CHRONONAUT_REQUIRE_EXTRA_CHANGE_INFO", False)
        app.config.setdefault("CHRONONAUT_EXTRA_CHANGE_INFO_FUNC", None)
        super().init_app(app)
        app.extensions["chrononaut"] = self
        app.cli.add_command(chrononaut_cli)

    def _make_session_factory(self, options: dict[str, Any]) -> sessionmaker[Any]:
        # Private Flask-SQLAlchemy hook, overridden on purpose: it is the one place that
        # both db.session and db._make_scoped_session(options) (which test fixtures call
        # to bind a session to a connection) go through, so every session the extension
        # makes is versioned. tests/test_extension.py fails if Flask-SQLAlchemy moves it.
        session_class = options.setdefault("class_", VersionedSession)
        if not issubclass(session_class, VersionedSession):
            raise ChrononautException(
                f"The session class {session_class.__name__} must subclass "
                "chrononaut.VersionedSession, or its changes would not be versioned."
            )
        return super()._make_session_factory(options)
