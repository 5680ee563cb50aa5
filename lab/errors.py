"""The one exception type for bad user input: its message is a single clear line."""


class LabError(ValueError):
    """Bad input: the message names the bad value and the allowed values."""
