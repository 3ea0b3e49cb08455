"""Exceptions raised by Chrononaut."""

from sqlalchemy.orm.exc import StaleDataError


class ChrononautException(Exception):
    """Base class of every error Chrononaut raises on purpose."""


class InvalidArgumentError(ChrononautException, TypeError, ValueError):
    """A public function or method was given an argument of the wrong type or value.

    Every bad argument raises this one error. It is a :class:`ChrononautException`, as
    the original raised for bad diff arguments, and also a :class:`TypeError` and a
    :class:`ValueError`, so that code written for either built-in catches it.
    """


class ChrononautRelationshipError(ChrononautException, AttributeError):
    """A relationship was read from a :class:`~chrononaut.models.HistorySnapshot`.

    Snapshots hold column values only, so related objects cannot be loaded from them.
    """


class UntrackedAttributeError(ChrononautException, AttributeError):
    """The attribute is listed in ``__chrononaut_untracked__`` and was never recorded."""


class HiddenAttributeError(ChrononautException, AttributeError):
    """The attribute is listed in ``__chrononaut_hidden__``: its changes are noted but
    its values are never stored."""


class ErasedAttributeError(ChrononautException, AttributeError):
    """The attribute's values were erased from this object's history with
    :func:`~chrononaut.erase`: the snapshot knows the value existed, not what it was."""


class UnrecordedWriteError(ChrononautException):
    """A bulk statement or bulk session method would change a versioned table without
    recording history.

    Change the objects through the session (load, modify, commit), which records every
    change, or run the write inside :func:`~chrononaut.unsafe.suppress_versioning` to
    skip history on purpose.
    """


class ProtectedHistoryError(ChrononautException):
    """History rows were to be changed or deleted outside
    ``suppress_versioning(allow_deleting_history=True)``."""


class ConcurrentChangeError(ChrononautException, StaleDataError):
    """Another transaction changed or deleted a versioned row after this session read it.

    The flush that found it fails; roll the session back, load the object again and
    reapply the change. It is also SQLAlchemy's
    :class:`~sqlalchemy.orm.exc.StaleDataError`, which code written for SQLAlchemy's
    own version counter already catches.
    """
