"""Fill the lake with the sample tables, from the CSVs shipped in `support_team/data`:
`python -m support_team.sample_data` (again at any time: it rewrites them)."""

import shutil
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.dataset as ds

from support_team.lake import LAKE, REVIEWS, SUPPORT_DB

DATA = Path(__file__).parent / "data"


def write(lake: Path = LAKE) -> None:
    """The reviews as a day-partitioned Parquet dataset, accounts and articles in DuckDB. Each is
    built aside and moved into place, so a reader never sees half a table."""
    lake.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lake) as scratch:
        reviews = pv.read_csv(DATA / "reviews.csv", convert_options=pv.ConvertOptions(
            column_types={"reviewed_at": pa.timestamp("s"), "rating": pa.int8()}))
        day = pc.strftime(reviews["reviewed_at"], format="%Y-%m-%d")
        ds.write_dataset(reviews.append_column("reviewed_on", day), Path(scratch, "reviews"), format="parquet",
                         partitioning=["reviewed_on"], partitioning_flavor="hive")
        with duckdb.connect(str(Path(scratch, "support.duckdb"))) as db:
            for table in ("accounts", "articles"):
                db.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, header = true)",
                           [str(DATA / f"{table}.csv")])
        for built, target in ((Path(scratch, "reviews"), lake / REVIEWS.name),
                              (Path(scratch, "support.duckdb"), lake / SUPPORT_DB.name)):
            if target.is_dir():
                shutil.rmtree(target)
            built.replace(target)


if __name__ == "__main__":
    write()
    print(f"sample tables written to {LAKE}")
