"""The project's own error types: every message says what is wrong and what to do next."""


class SdfuseError(Exception):
    """Base class of every error sdfuse raises on purpose."""


class ConfigError(SdfuseError, ValueError):
    """An invalid parameter, rejected before any model loads."""


class WeightsNotFoundError(SdfuseError):
    """Model weights are neither in a local folder nor in the Hugging Face cache."""


class DatasetError(SdfuseError):
    """A dataset is missing, incomplete or malformed."""


class StorageError(SdfuseError):
    """A file could not be written: the disk is full, or the folder is not writable.

    Nothing partial is left at the destination; the message names the path and what to do.
    """


class ResourceError(SdfuseError):
    """The machine ran out of a resource (GPU or host memory) even after every fallback."""


class UnsafeWeightsError(SdfuseError):
    """A weight file is not plain tensors (a pickle with code in it): refused, never unpickled."""


class FeatureError(SdfuseError):
    """A backbone produced unusable features (NaN or infinite values); nothing was cached."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the ``sdfuse`` command's handler so that it unwinds as
    Ctrl-C does: temporary files removed, the running notebook recorded as interrupted."""
