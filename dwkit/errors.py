"""The toolkit's own exception types.

Every error a user can cause (bad audio, a missing model, an unavailable backend, a bad
config) is one of these, raised with the fix in the message. The CLI turns them into one
line on stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""

import errno


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


class OutputError(DwkitError):
    """An output file or directory could not be written; nothing partial was left in its place."""


_OS_ERROR_FIXES = {
    errno.EACCES: "check its permissions, or choose a location this user may write",
    errno.EPERM: "check its permissions, or choose a location this user may write",
    errno.EROFS: "it is on a read-only filesystem; choose another location",
    errno.ENOSPC: "the disk is full; free some space and run again",
    errno.EDQUOT: "the disk quota is exhausted; free some space and run again",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path, the reason, and what to do about it.

    Shared by the CLI's error handler and the writers, so a permission problem reads the same
    whichever layer met it.
    """
    where = f"{exc.filename}: " if exc.filename else ""
    reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
    fix = _OS_ERROR_FIXES.get(exc.errno or 0)
    return f"{where}{reason}" + (f" ({fix})" if fix else "")
