"""Entry-point wrapper shared by every `python -m repro.<paper>` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from repro.common.errors import UserError
from repro.common.memory import keep_freed_memory


def run_main(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a CLI `main` (with the allocator of repro.common.memory), turning a `UserError` into one clear line on
    stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        keep_freed_memory()
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
