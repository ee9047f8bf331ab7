"""Commands registered on `geoloc ingest` (filled by their issue)."""

from .ingest import ingest  # noqa: F401
