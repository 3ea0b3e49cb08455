"""The retention rules a versioned model declares: how much of its history pruning
(:mod:`chrononaut.maintenance.retention`) may remove. ``docs/retention.rst`` tells
the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Mapper

from chrononaut.exceptions import ChrononautException, InvalidArgumentError

#: The class attribute that declares a model's :class:`Retention`.
RETENTION_ATTRIBUTE = "__chrononaut_retention__"


@dataclass(frozen=True)
class Retention:
    """How much of a model's history
    :func:`~chrononaut.maintenance.retention.prune` keeps.

    Each rule given keeps some rows; a row is removed only when none keeps it. For
    each object (each key) the rows in the order they were recorded are considered:

    :param versions: keep the newest ``versions`` rows of each object (at least 1).
    :param days: keep the rows changed in the last ``days`` days (at least 1), and
        the newest row before that, which holds the object's state at the cutoff.
    :param keep_deletes: keep every row that records a delete, and the row that
        starts an object's next life after a delete the row does not say is one.
    :raises InvalidArgumentError: a number is not a positive integer, ``keep_deletes``
        is not a bool, or neither ``versions`` nor ``days`` is given.
    """

    versions: int | None = None
    days: int | None = None
    keep_deletes: bool = False

    def __post_init__(self) -> None:
        for name in ("versions", "days"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise InvalidArgumentError(
                    f"Retention({name}=...) must be a positive integer, not {value!r}."
                )
        if not isinstance(self.keep_deletes, bool):
            raise InvalidArgumentError(
                f"Retention(keep_deletes=...) must be True or False, not {self.keep_deletes!r}."
            )
        if self.versions is None and self.days is None:
            raise InvalidArgumentError(
                "A Retention keeps everything without `versions` or `days`: give one, "
                "or declare no retention at all."
            )

    def as_json(self) -> dict[str, Any]:
        """The rule as the prune record stores it."""
        return {"versions": self.versions, "days": self.days, "keep_deletes": self.keep_deletes}


def retention_of(model: type[Any]) -> Retention | None:
    """Return the retention ``model`` declares, ``None`` to keep everything.

    :raises ChrononautException: the declaration is not a :class:`Retention`.
    """
    declared = getattr(model, RETENTION_ATTRIBUTE, None)
    if declared is not None and not isinstance(declared, Retention):
        raise ChrononautException(
            f"{model.__name__}.{RETENTION_ATTRIBUTE} must be a chrononaut.Retention, "
            f"such as Retention(days=90), or None; not {declared!r}."
        )
    return declared


def check_retention(mapper: Mapper[Any]) -> None:
    """Refuse a retention declaration that pruning could not apply; called when a
    versioned model is mapped, with the checks of its other declarations.

    :raises ChrononautException: ``__chrononaut_retention__`` is not a
        :class:`Retention` (or ``None``), or a single-table subclass declares another
        rule than the class whose table it shares: their rows cannot be told apart.
    """
    declared = retention_of(mapper.class_)
    parent = mapper.inherits
    if parent is None or parent.local_table is not mapper.local_table:
        return
    if retention_of(parent.class_) != declared:
        raise ChrononautException(
            f"{mapper.class_.__name__} shares the table of {parent.class_.__name__}, so their "
            f"history rows are one: it cannot declare another {RETENTION_ATTRIBUTE}."
        )
