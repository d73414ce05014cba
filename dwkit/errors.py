"""The toolkit's own exception types.

Every error a user can cause (bad audio, a missing model, an unavailable backend, a bad
config) is one of these, raised with the fix in the message. The CLI turns them into one
line on stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""


class DwkitError(Exception):
    """Base class: a user-facing problem whose message is the whole explanation."""


class AudioError(DwkitError):
    """Audio could not be read, or holds no samples."""


class ModelError(DwkitError):
    """A model directory or hub id is missing, incomplete or inconsistent."""


class ConversionError(DwkitError):
    """A conversion could not be completed; nothing was written to the output path."""


class BackendUnavailable(DwkitError):
    """A backend's library or hardware is missing; the message names the pip extra or device."""


class ConfigError(DwkitError):
    """A config file, option or combination of options is invalid."""


class ValidationError(ConversionError):
    """A converted model does not match the transformers reference within tolerance
    (raised during conversion, so nothing was written)."""
