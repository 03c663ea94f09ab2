"""Before `serve`, `project` or `dispatch` follow the read models: are they built by this
release's definitions? (`projections.definitions`)"""

from __future__ import annotations

import sys

from interfaces.cli_support import CliError
from interfaces.composition import Services
from projections.registry import ProjectionBusy


def require_current_read_models(services: Services) -> None:
    """Read models built by an older definition (`projections.definitions`): rebuilt here
    on SQLite, so `./dev serve` stays one command; on PostgreSQL a `CliError` naming
    `dmledger projections rebuild`, since rebuilding a long log is the operator's to
    schedule (and every process of the deployment must stop for it)."""
    outdated = services.read_models.outdated()
    if not outdated:
        return
    names = " ".join(outdated)
    if services.read_models.conversation_list.engine.dialect.name == "postgresql":
        raise CliError(
            f"the read models {', '.join(outdated)} were built by another definition than "
            f"this release's: stop serve and project, run `dmledger projections rebuild "
            f"{names}`, then start again"
        )
    print(f"dmledger: rebuilding {', '.join(outdated)} (a new definition)", file=sys.stderr)
    try:
        services.read_models.rebuild(outdated)
    except ProjectionBusy as busy:
        raise CliError(
            f"{busy.name} needs a rebuild (a new definition) but another process follows "
            f"it: stop it, then run `dmledger projections rebuild {names}`"
        ) from None
