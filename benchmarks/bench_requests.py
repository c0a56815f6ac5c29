"""Request building: source CSV rows to JSONL shards on disk, in rows/s.

Beside it, in the same run: the naive baseline a user would write (pandas `iterrows`, `str.format`,
`json.dumps`, one `write` per row, a new file every 50,000 lines; no validation, no rejected rows,
no token counts), and the floor (orjson encoding the same line dicts built from plain Python
lists, nothing else). Ours also validates every row and counts its input tokens offline for the
cost estimate; "ours, no token counts" shows what that counting costs.
Run alone: ``.venv/bin/python -m benchmarks.bench_requests --rows 100000``.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import orjson
import pyarrow.parquet as pq

from batch_pipeline import request_lines
from batch_pipeline.request_lines import stream_requests
from batch_pipeline.source import read_partition_batches
from benchmarks.workload import PARTITION, SPEC, rows, run_alone, source_for, timed, write_source

SHARD_LINES = 50_000


def ours(csv_path: Path, out: Path) -> int:
    """The pipeline's path: streaming CSV read, `stream_requests`, each shard written as it closes."""
    source = source_for(csv_path)
    out.mkdir(parents=True, exist_ok=True)
    indexes = []
    shard = 0
    for index, data in stream_requests(read_partition_batches(source, PARTITION), source, SPEC):
        indexes.append(index)
        if data is not None:
            (out / f"shard-{shard:05d}.jsonl").write_bytes(data)
            shard += 1
    import pyarrow as pa

    index = pa.concat_tables(indexes)
    pq.write_table(index, out / "rows.parquet")
    return index.num_rows


def ours_without_token_counts(csv_path: Path, out: Path) -> int:
    with mock.patch.object(request_lines, "input_tokens", lambda model, texts, chat: [0] * len(texts[0])):
        return ours(csv_path, out)


def naive(csv_path: Path, out: Path) -> int:
    """What a user would write first: iterrows, format, json.dumps, a write per row."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    df = df[df["list_date"] == PARTITION]
    count, shard, f = 0, 0, None
    for _, row in df.iterrows():
        if count % SHARD_LINES == 0:
            if f:
                f.close()
            f = open(out / f"shard-{shard:05d}.jsonl", "w", encoding="utf-8")
            shard += 1
        line = {"custom_id": row["medication_id"], "method": "POST", "url": SPEC.endpoint, "body": {
            "model": SPEC.model,
            "messages": [{"role": "system", "content": SPEC.system_prompt},
                         {"role": "user", "content": SPEC.prompt.format(**row)}],
            **SPEC.parameters}}
        f.write(json.dumps(line) + "\n")
        count += 1
    if f:
        f.close()
    return count


def floor_inputs(count: int) -> tuple[list[str], list[str]]:
    """custom_ids and user texts as plain Python lists (built outside the timing)."""
    ids, texts = [], []
    for key, _, name, drug_class, indication, notes in rows(count):
        ids.append(key)
        texts.append(SPEC.prompt.format(name=name, drug_class=drug_class, indication=indication, dosage_notes=notes))
    return ids, texts


def floor(ids: list[str], texts: list[str]) -> int:
    """orjson encoding the same line dicts, nothing else: no reading, no checks, no disk.

    Lines are joined 50,000 at a time, as any shard writer would: holding a million small orjson
    outputs at once costs ~4 KB of resident memory each and would slow the floor itself down.
    """
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    system, params, url, model = SPEC.system_prompt, SPEC.parameters, SPEC.endpoint, SPEC.model
    count = 0
    for start in range(0, len(ids), SHARD_LINES):
        shard = b"".join([dumps({"custom_id": cid, "method": "POST", "url": url, "body": {
            "model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            **params}}, option=option) for cid, text in zip(ids[start:start + SHARD_LINES],
                                                            texts[start:start + SHARD_LINES])])
        count += shard.count(b"\n")
    return count



def measure(count: int, workdir: Path, with_naive: bool = True) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = write_source(workdir / f"source-{count}.csv", count)
    result: dict = {"rows": count}
    seconds, n = timed(ours, csv_path, workdir / "ours")
    result["ours"] = n / seconds
    seconds, n = timed(ours_without_token_counts, csv_path, workdir / "ours-no-tokens")
    result["ours_no_tokens"] = n / seconds
    ids, texts = floor_inputs(count)
    seconds, n = timed(floor, ids, texts)
    result["floor"] = n / seconds
    del ids, texts
    if with_naive:
        seconds, n = timed(naive, csv_path, workdir / "naive")
        result["naive"] = n / seconds
    return result


if __name__ == "__main__":
    run_alone(measure, __doc__)
