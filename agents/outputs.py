"""Pre-flight checks of output paths: every script checks where it will write together with its
other arguments (exit 2, nothing created), instead of failing after the work is done; and the
one way a script reports a refusal (``refuse``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["check_output_dir", "check_output_file", "refuse"]


def refuse(problem: object, code: int = 2) -> int:
    """Print ``error: <problem>`` on stderr and return the exit status (2: bad input, nothing
    was done; 1: the work itself failed)."""
    print(f"error: {problem}", file=sys.stderr)
    return code


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a folder that can be created (or exists) and written to; creates nothing.

    Raises:
        ValueError: If ``path`` is empty, is an existing file, lies under a file, or its
            nearest existing folder is not writable; the message names ``flag``.
    """
    text = str(path)
    if not text or "\0" in text:
        raise ValueError(f"{flag} must be a folder path, got {text!r}.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {text} is a file, not a folder; choose another {flag}.")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ValueError(f"{flag} {text} lies under the file {existing}; choose another {flag}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {text}: cannot write in {existing} (permission denied); "
                         f"choose another {flag}.")
    return path


def check_output_file(path: str | Path, flag: str = "--out",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file that can be written (its folder may still have to be created);
    creates nothing.

    Args:
        path: The output file.
        flag: Its name in messages.
        suffixes: Allowed suffixes (lower case, e.g. ``(".gif", ".mp4")``); empty: any.

    Raises:
        ValueError: For another suffix, an existing folder in its place, or a folder that
            cannot be created or written (see ``check_output_dir``).
    """
    text = str(path)
    if not text or "\0" in text:
        raise ValueError(f"{flag} must be a file path, got {text!r}.")
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} must end in {' or '.join(suffixes)}, got {path.name!r}.")
    if path.is_dir():
        raise ValueError(f"{flag} {text} is a folder; give a file name inside it.")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise ValueError(f"{flag} {text} lies under the file {existing}; choose another {flag}.")
    check_output_dir(path.parent, flag)
    return path


def progress_interval() -> float:
    """Seconds between progress-bar refreshes (tqdm's ``mininterval``): 0.1 s on a terminal,
    30 s when stderr is redirected to a file or pipe, so that a log gets a progress line every
    half minute instead of ten per second."""
    return 0.1 if sys.stderr.isatty() else 30.0

