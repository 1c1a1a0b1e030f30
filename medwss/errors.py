"""The `MedwssError` family: every error a user can act on names the file and the cause in one line."""

from __future__ import annotations

from pathlib import Path


class MedwssError(Exception):
    """Base class of every error medwss raises on purpose.

    Args:
        message: What went wrong, in one line.
        path: The file or folder concerned, if any; it is put in front of the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class FileNotFound(MedwssError):
    """The file or folder does not exist."""


class UnsupportedFormatError(MedwssError):
    """No reader recognises the file."""


class CorruptFileError(MedwssError):
    """The file is recognised but its content cannot be decoded."""


class InvalidDataError(MedwssError):
    """The file reads, but its content is unusable (NaNs, empty image, wrong dimensions)."""


class MissingMetadataError(MedwssError):
    """Metadata the operation needs (for example microns per pixel) is absent; pass it explicitly."""


class AmbiguousInputError(MedwssError):
    """The input holds several candidates (for example several DICOM series); choose one."""


class ManifestError(MedwssError):
    """A manifest has one or more problems; `problems` lists them all."""

    def __init__(self, problems: list[str], path: str | Path | None = None) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = self.problems[0] if n else "invalid manifest"
        more = f" (and {n - 1} more problem{'s' if n > 2 else ''})" if n > 1 else ""
        super().__init__(head + more, path)


class ConfigError(MedwssError):
    """A configuration file or value is invalid."""


def require_file(path: str | Path) -> Path:
    """Return `path` as a `Path`, raising `FileNotFound` if nothing exists there."""
    p = Path(path)
    if not p.exists():
        raise FileNotFound("no such file or folder", p)
    return p
