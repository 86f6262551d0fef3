"""Errors a user can act on. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class StyleLipSyncError(Exception):
    """Base class: the message names the file involved and the fix."""

    exit_code = 1


class MediaError(StyleLipSyncError):
    """A video, image or audio file is missing, unsupported, corrupt or empty."""

    exit_code = 2


class FaceNotFoundError(StyleLipSyncError):
    """No usable face in the input."""

    exit_code = 3


class CheckpointError(StyleLipSyncError):
    """Weights are missing, unreadable or do not match the configuration."""

    exit_code = 4


class OutputError(StyleLipSyncError):
    """The output cannot be written (not writable, disk full, would overwrite the input)."""

    exit_code = 5
