"""The :class:`Versioned` mixin, which makes a model's changes recorded."""

from __future__ import annotations

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from chrononaut.capture.change_info import ChangeInfoMixin
from chrononaut.capture.undo import HistoryUndo
from chrononaut.history.reads import HistoryReads


class Versioned(ChangeInfoMixin, HistoryReads, HistoryUndo):
    """Mixin that records a snapshot of the model on every insert, change and delete.

    Class attributes that tune it:

    ``__chrononaut_untracked__``
        Attribute names that are never recorded; changing only them makes no version.
    ``__chrononaut_hidden__``
        Attribute names whose changes make a version without storing the value; the
        names that changed are listed in ``extra_info["hidden_cols_changed"]``.

    Each is a list, tuple or set of column attribute names outside the primary key and
    ``version``, checked when the model is mapped. Set on an instance, they apply from
    its next flush: its untracked list replaces the class's, its hidden list adds to it.

    A nullable integer ``version`` column is added unless the model or a mapped parent
    already has one. The query methods come from
    :class:`~chrononaut.history.reads.HistoryReads`, the undo methods from
    :class:`~chrononaut.capture.undo.HistoryUndo`.
    """

    @declared_attr
    def version(cls) -> Mapped[int | None]:
        return mapped_column(Integer, default=0, nullable=True)
