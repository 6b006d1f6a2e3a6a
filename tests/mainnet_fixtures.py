"""Where the real mainnet fixtures are (JSON-RPC replies with the rows ethereum-etl produced from
them): one place for every test that reads them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_SHARED = Path("shared") / "fixtures" / "ethereum-etl-mainnet"


def fixtures_dir() -> Path:
    """``$CHAINLAKE_FIXTURES``, else shared/ beside the repository, else (a clone made elsewhere,
    e.g. in ``mktemp -d``) shared/ beside the local repository it was cloned from."""
    explicit = os.environ.get("CHAINLAKE_FIXTURES")
    if explicit:
        return Path(explicit)
    beside = REPO_ROOT.parent / IN_SHARED
    if beside.is_dir():
        return beside
    origin = subprocess.run(["git", "-C", str(REPO_ROOT), "remote", "get-url", "origin"],
                            capture_output=True, text=True).stdout.strip()
    if origin and Path(origin).is_dir():
        cloned_from = Path(origin).resolve().parent / IN_SHARED
        if cloned_from.is_dir():
            return cloned_from
    return beside


FIXTURES = fixtures_dir()
