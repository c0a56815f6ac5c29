"""Where the team's tables live: a folder of Parquet datasets and a DuckDB database.

In production these would be the lake's real locations. Here the folder is $SUPPORT_LAKE (else
`lake` in the working directory), filled from the CSVs shipped in the package by
`python -m support_team.sample_data`.
"""

import os
from pathlib import Path

LAKE = Path(os.environ.get("SUPPORT_LAKE", "lake")).resolve()
REVIEWS = LAKE / "reviews"  # Parquet, one Hive folder per day: reviewed_on=2026-11-09/
SUPPORT_DB = LAKE / "support.duckdb"  # tables `accounts` and `articles`
