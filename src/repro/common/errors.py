"""Errors a user can act on."""


class UserError(Exception):
    """A failure caused by input the user controls (config, data, files).

    The message must say what broke and how to fix it; CLIs print it alone, without a traceback.
    """


class ConfigError(UserError):
    """An invalid configuration value, named by file and key path."""
