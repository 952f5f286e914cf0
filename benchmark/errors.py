"""The errors the CLI turns into one ``error:`` line and exit code 2; each message names what was wrong."""


class ConfigError(ValueError):
    """A configuration value or override that cannot be used; the message says what was expected."""


class DataError(ValueError):
    """Bad input data: the message names the file, folder or value and says what was expected."""


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says where and why."""


class RecordError(ValueError):
    """A run record file that cannot be used; the message names the file and says why."""
