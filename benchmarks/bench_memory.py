"""Peak memory (RSS) of building and of harvesting N rows, each in a fresh subprocess.

`build` streams the CSV into request shards on disk (`stream_requests`, one shard in memory at
a time); `harvest` is the results asset's way (every batch's lines, one join) and
`harvest-by-shard` joins and writes one shard at a time. The parent prepares the inputs.
Run alone: ``.venv/bin/python -m benchmarks.bench_memory --rows 100000 1000000``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("build", "harvest")


def _child(mode: str, count: int, workdir: Path) -> None:
    from benchmarks import bench_harvest, bench_requests

    folder = workdir / f"harvest-{count}"
    if mode == "build":
        bench_requests.ours(workdir / f"source-{count}.csv", workdir / f"build-{count}")
    else:
        bench_harvest.ours(folder, workdir / f"mem-{count}.parquet")
    print(json.dumps({"peak_rss_mb": _peak_kib() / 1024}))


def _peak_kib() -> int:
    """This process's peak RSS. VmHWM starts afresh at exec; ru_maxrss would carry the parent's
    peak over the fork into the child."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_mb(mode: str, count: int, workdir: Path) -> float:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_memory", "--child", mode, "--rows", str(count),
                           "--workdir", str(workdir)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def measure(counts: list[int], workdir: Path) -> dict:
    """{mode: {rows: peak MB}}; inputs for every size are prepared here, outside the children."""
    workdir.mkdir(parents=True, exist_ok=True)
    from benchmarks.bench_harvest import prepare

    for count in counts:
        prepare(count, workdir)  # writes source-N.csv, harvest-N/requests and raw files
    return {mode: {count: peak_rss_mb(mode, count, workdir) for count in counts} for mode in MODES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.rows[0], args.workdir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.rows, Path(tmp)), indent=1))


if __name__ == "__main__":
    main()
