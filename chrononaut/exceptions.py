"""Exceptions raised by Chrononaut."""


class ChrononautException(Exception):
    """Base class of every error Chrononaut raises on purpose."""


class ChrononautRelationshipError(ChrononautException, AttributeError):
    """A relationship was read from a :class:`~chrononaut.models.HistorySnapshot`.

    Snapshots hold column values only, so related objects cannot be loaded from them.
    """


class UntrackedAttributeError(ChrononautException, AttributeError):
    """The attribute is listed in ``__chrononaut_untracked__`` and was never recorded."""


class HiddenAttributeError(ChrononautException, AttributeError):
    """The attribute is listed in ``__chrononaut_hidden__``: its changes are noted but
    its values are never stored."""


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
