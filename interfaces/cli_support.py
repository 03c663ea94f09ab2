"""What the command groups of the CLI share: the operator's error, the services of one
command, a table and a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from infrastructure.persistence import describe_database
from infrastructure.settings import Settings
from interfaces.composition import Services, build


class CliError(Exception):
    """A message for the operator; the command exits with status 2."""


@contextmanager
def services_of(settings: Settings) -> Iterator[Services]:
    """The services a command uses, closed when it is done; what they announce (a new
    chain key, say) goes to standard error."""
    services = build(settings, announce=lambda text: print(text, file=sys.stderr))
    print(f"dmledger: database {describe_database(settings.database_url)}", file=sys.stderr)
    try:
        yield services
    finally:
        services.close()


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns as wide as their widest value, two spaces apart."""
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


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
