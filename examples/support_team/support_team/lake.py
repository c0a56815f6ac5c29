"""Where the team's tables live: a folder of Parquet datasets and a DuckDB database.

In production these would be the lake's real locations. Here the folder is $SUPPORT_LAKE (else
`lake` under $DAGSTER_HOME, the folder the webserver, the daemon and every run share: never the
working directory, which differs between them), filled from the CSVs shipped in the package by
`python -m support_team.sample_data`.
"""

import os
from pathlib import Path


def _lake() -> Path:
    if os.environ.get("SUPPORT_LAKE"):
        return Path(os.environ["SUPPORT_LAKE"]).resolve()
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).resolve() / "lake"
    raise RuntimeError("set SUPPORT_LAKE (or DAGSTER_HOME) to the folder that holds the team's tables")


LAKE = _lake()
REVIEWS = LAKE / "reviews"  # Parquet, one Hive folder per day: reviewed_on=2026-11-09/
SUPPORT_DB = LAKE / "support.duckdb"  # tables `accounts` and `articles`
