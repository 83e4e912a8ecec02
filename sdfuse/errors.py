"""The project's own error types: every message says what is wrong and what to do next."""


class SdfuseError(Exception):
    """Base class of every error sdfuse raises on purpose."""


class ConfigError(SdfuseError, ValueError):
    """An invalid parameter, rejected before any model loads."""


class WeightsNotFoundError(SdfuseError):
    """Model weights are neither in a local folder nor in the Hugging Face cache."""


class DatasetError(SdfuseError):
    """A dataset is missing, incomplete or malformed."""
