"""The errors srlib raises for bad input: one line, naming the file and the problem."""


class SrlibError(Exception):
    """Base of every error srlib reports to a user; the CLI prints it and exits 1."""

    exit_code = 1


class UsageError(SrlibError):
    """A wrong argument (unknown preset, unsupported scale, missing folder); the CLI exits 2."""

    exit_code = 2


class ImageError(SrlibError):
    """An image that cannot be read or used: empty, truncated, corrupt, too large or too small."""


class CheckpointError(SrlibError):
    """A checkpoint that is missing, truncated, foreign, or built for another scale or preset."""


class DownloadError(SrlibError):
    """A download or archive that failed its size, checksum or safety checks."""


class TrainingError(SrlibError):
    """Training that cannot go on (a NaN or Inf loss); the last good checkpoint is kept."""
