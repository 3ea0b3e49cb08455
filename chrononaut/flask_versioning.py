"""Names older applications import from ``chrononaut.flask_versioning``."""

from chrononaut.history.serialization import UTC, serialize_datetime

__all__ = ["UTC", "serialize_datetime"]
