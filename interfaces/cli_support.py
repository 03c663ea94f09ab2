"""What the command groups of the CLI share: the operator's error and a progress bar."""

from __future__ import annotations

import sys


class CliError(Exception):
    """A message for the operator; the command exits with status 2."""


class ProgressBar:
    """A progress bar on a terminal's standard error; nothing when it is not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = sys.stderr.isatty()

    def update(self, position: int, head: int) -> None:
        if not self.shown or head <= 0:
            return
        width = 30
        filled = int(width * position / head)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {position}/{head}")
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
