"""Errors a user can cause and fix: the CLI prints them as one message, never a traceback."""


class BlalmError(Exception):
    """A user-facing error: bad input, bad config, missing file. The message says what and where."""


class ConfigError(BlalmError):
    """A config file or ``--set`` override names an unknown key or holds a bad value."""


class InputError(BlalmError):
    """An input file is missing, empty, or malformed (the message names the file and line)."""
