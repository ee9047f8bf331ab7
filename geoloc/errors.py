"""Typed errors raised by the library; only the CLI turns them into one-line messages with a hint."""


class GeolocError(Exception):
    """Base of every error a user can cause or fix. ``hint`` says what to do next."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(GeolocError):
    """A setting (environment variable, option) has an unusable value."""


class DatabaseUnavailable(GeolocError):
    hint = "start the embedded database with 'geoloc db up' or set GEOLOC_DATABASE_URL"


class ExtensionMissing(GeolocError):
    hint = "run 'geoloc db migrate' as a user allowed to CREATE EXTENSION, or install it with scripts/install-system.sh"


class ClusterError(GeolocError):
    """The embedded PostgreSQL cluster could not be created, started or stopped."""


class InputError(GeolocError):
    """A file or value given by the user is unusable (bad GeoJSON, corrupt image, ...)."""


class NotFound(GeolocError):
    """A named thing (area, model, ...) does not exist in the database."""


class AlreadyExists(GeolocError):
    """A name that must be unique is already taken."""


class DimensionMismatch(GeolocError):
    """An embedding's dimension does not match its model's."""


class RemoteError(GeolocError):
    """A remote API answered in a way that stops the run (REQUEST_DENIED, repeated failures)."""


class MigrationError(GeolocError):
    """A migration cannot be applied to the data in the database; nothing was changed."""
