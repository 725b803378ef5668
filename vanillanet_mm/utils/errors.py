"""Errors raised on purpose for bad input, which a user can fix.

The command-line tools print these as one line (``TOOL: error: …``, exit 1,
see :mod:`vanillanet_mm.utils.cli`); every other exception is a bug and keeps
its traceback. Each also derives from the builtin a Python caller would expect.
"""


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config value or argument that cannot work."""


class InputFileError(UserError, FileNotFoundError):
    """A file or folder that is missing or unusable."""


class OutputExistsError(UserError, FileExistsError):
    """An output that already exists and may not be overwritten."""


class FusionError(UserError, RuntimeError):
    """Fusing to the deploy form would change the network (λ ≠ 1)."""
