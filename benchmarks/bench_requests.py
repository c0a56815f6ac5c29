"""Request building: source CSV rows to JSONL shards on disk, in rows/s.

Beside it, in the same run: the naive baseline a user would write (pandas `iterrows`, `str.format`,
`json.dumps`, one `write` per row, a new file every 50,000 lines; no validation, no rejected rows,
no token counts), and the floor (orjson encoding the same line dicts built from plain Python
lists, nothing else). Ours does what the requests asset does on a first build: it also validates
every row, estimates its input tokens (counted on a sample, see `request_lines`), hashes every
line for carry-over and writes the index. The estimate is checked against counting every row.
Run alone: ``.venv/bin/python -m benchmarks.bench_requests --rows 100000``.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from batch_pipeline.provider.openai_tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, count_tokens
from batch_pipeline.requests.carry_over import PreviousAnswers
from batch_pipeline.requests.lines import INDEX_UNIQUE
from batch_pipeline.requests.shard_files import write_requests
from batch_pipeline.sources.csv_source import read_partition_batches
from batch_pipeline.warehouse.storage import Warehouse
from benchmarks.workload import PARTITION, SPEC, rows, run_alone, source_for, timed, write_source

SHARD_LINES = 50_000


def ours(csv_path: Path, out: Path) -> Path:
    """The requests asset's path, through the same function: streaming CSV read, requests,
    carry-over (nothing to carry on a first build), each shard written as it closes, the index
    streamed to its file (returned)."""
    source = source_for(csv_path)
    warehouse = Warehouse(out)
    index = warehouse.root / "rows.parquet"
    with warehouse.parquet_writer(index, unique=INDEX_UNIQUE + (source.key,)) as write_index:
        write_requests(warehouse, warehouse.root, read_partition_batches(source, PARTITION), source, SPEC,
                       PreviousAnswers.load(None, None), write_index)
    return Path(index.path)


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
                                                            texts[start:start + SHARD_LINES], strict=True)])
        count += shard.count(b"\n")
    return count



def counted_tokens(index: pa.Table, ids: list[str], texts: list[str]) -> int:
    """Input tokens of the requests in `index`, every row counted (the estimate's reference)."""
    sent = set(index["custom_id"].filter(pc.equal(index["status"], "pending")).to_pylist())
    user = [t for i, t in zip(ids, texts, strict=True) if i in sent]
    system = count_tokens(SPEC.model, [SPEC.system_prompt])[0]
    per_request = system + 2 * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
    return sum(count_tokens(SPEC.model, user)) + per_request * len(user)


def measure(count: int, workdir: Path, with_naive: bool = True) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = write_source(workdir / f"source-{count}.csv", count)
    result: dict = {"rows": count}
    ours(write_source(workdir / "warm-up.csv", 10), workdir / "warm-up")  # imports, tokenizer tables
    seconds, index_path = timed(ours, csv_path, workdir / "ours")
    index = pq.read_table(index_path)
    result["ours"] = index.num_rows / seconds
    ids, texts = floor_inputs(count)
    seconds, n = timed(floor, ids, texts)
    result["floor"] = n / seconds
    estimated = pc.sum(index["estimated_input_tokens"]).as_py()
    result["token_estimate_error"] = estimated / counted_tokens(index, ids, texts) - 1
    del ids, texts
    if with_naive:
        seconds, n = timed(naive, csv_path, workdir / "naive", repeat=1)  # minutes at 1M; 10x is far off
        result["naive"] = n / seconds
    return result


if __name__ == "__main__":
    run_alone(measure, __doc__)
