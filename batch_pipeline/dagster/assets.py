"""A use case (source table + `BatchSpec`) to Dagster definitions: requests, batches, results.

Each asset works over `context.partition_keys`, so one run can submit a whole backfill range
(`BackfillPolicy.single_run()`), and attaches its metadata per partition.
"""


from collections.abc import Sequence

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from upath import UPath

from batch_pipeline.requests.carry_over import PreviousAnswers, carried_rows
from batch_pipeline.failpoints import failpoint
from batch_pipeline.harvest.lines import RESULT_UNIQUE, STATUSES, counts_by_status, retryable
from batch_pipeline.dagster.preview import markdown_table
from batch_pipeline.state.records import PartitionRecord, latest_record, record_metadata
from batch_pipeline.requests.shard_files import write_requests
from batch_pipeline.requests.lines import INDEX_UNIQUE, PENDING, REJECTED
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.harvest.slices import follow_ups, harvest_slices
from batch_pipeline.sources.csv_source import read_partition_batches
from batch_pipeline.provider.submission import Shard, submit_shards
from batch_pipeline.use_case import UseCase
from batch_pipeline.warehouse.storage import Warehouse

INDEX_FILE = "rows.parquet"
RESULTS_FILE = "results.parquet"
CARRIED_FILE = "carried.parquet"


def use_case_definitions(uc: UseCase) -> dg.Definitions:
    """The use case's assets, its submit, admit and results jobs, and its daily schedule."""
    schedule = dg.build_schedule_from_partitioned_job(
        uc.submit_job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return dg.Definitions(
        assets=_build_assets(uc),
        jobs=[uc.submit_job, uc.admit_job, uc.results_job],
        schedules=[schedule],
    )


class SubmitConfig(dg.Config):
    """Run-time knobs of a submission, set in the Launchpad."""

    max_run_cost_usd: float | None = Field(
        default=None, description="Refuse to submit when this run's estimated cost is higher."
    )


def _check_budget(wh: Warehouse, uc: UseCase, partitions: Sequence[str], run_limit: float | None) -> None:
    """Stop before any upload when a partition, or the run, is estimated over its budget."""
    total = 0.0
    for partition in partitions:
        folder = wh.partition_dir(uc.name, "requests", partition)
        if not (folder / INDEX_FILE).exists():
            raise dg.Failure(
                f"{uc.name} {partition}: no request index at {folder}; "
                "materialize the requests asset for this partition first"
            )
        cost = uc.estimate(wh.read_parquet(folder / INDEX_FILE)).cost_usd
        total += cost
        limit = uc.spec.max_cost_usd
        if limit is not None and cost > limit:
            raise dg.Failure(
                f"{uc.name} {partition}: estimated cost ${cost:.4f} is over the spec's "
                f"max_cost_usd ${limit:.4f}; nothing was uploaded"
            )
    if run_limit is not None and total > run_limit:
        raise dg.Failure(
            f"{uc.name}: estimated cost ${total:.4f} of {len(partitions)} partitions is over "
            f"max_run_cost_usd ${run_limit:.4f}; nothing was uploaded"
        )


def _rate_check(name: str, count: int, answered: int, limit: float) -> dg.AssetCheckResult:
    rate = count / answered if answered else 0.0
    return dg.AssetCheckResult(
        check_name=name,
        passed=rate <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rate": dg.MetadataValue.float(round(rate, 4)), "count": count, "answered": answered,
                  "limit": dg.MetadataValue.float(limit)},
    )


def _accounting_problems(partition: str, index: pa.Table, results: pa.Table) -> list[str]:
    """Source rows missing from, or doubled in, a partition's results, by custom_id."""
    expected = index["custom_id"].to_pylist()
    got = results["custom_id"].to_pylist()
    seen: set[str] = set()
    doubled = sorted({c for c in got if c in seen or seen.add(c)})
    missing = sorted(set(expected) - seen)
    problems = []
    if missing:
        problems.append(f"{partition}: {len(missing)} rows missing: {', '.join(missing[:20])}")
    if doubled:
        problems.append(f"{partition}: {len(doubled)} rows doubled: {', '.join(doubled[:20])}")
    return problems


def _retrying(context: dg.AssetExecutionContext, wh: Warehouse, uc: UseCase, partition: str) -> bool:
    """Leave a partition as it is while a retry round is in flight.

    In flight means recorded and not harvested (see `PartitionRecord.retrying`), or a round's
    request file written after the latest record that no record mentions: a results run died
    between preparing a round and Dagster recording it. Rebuilding then could send that round's
    requests a second time; re-executing the results run finds the round and carries on.
    """
    record = latest_record(context.instance, uc.record_keys, partition)
    if record is None:
        return False
    if record.retrying:
        note = "left as it was: a retry round is in flight; the batch monitor finishes it"
    elif _unrecorded_rounds(wh, uc, partition, record):
        note = (
            "left as it was: a results run prepared a retry round that was never recorded; "
            "re-execute the partition's results run (run retries do this by themselves)"
        )
    else:
        return False
    context.log.warning("%s %s: %s", uc.name, partition, note)
    context.add_asset_metadata({"note": note}, partition_key=partition)
    return True


def _unrecorded_rounds(wh: Warehouse, uc: UseCase, partition: str, record: PartitionRecord) -> list[str]:
    folder = wh.partition_dir(uc.name, "requests", partition)
    if not folder.exists():
        return []
    known = {s.path for s in record.submissions} | {q.path for q in record.queued}
    return [
        str(p) for p in folder.glob("retry-*.jsonl")
        if str(p) not in known and p.stat().st_mtime > record.timestamp
    ]


def _columns(path: UPath, columns: list[str]) -> pa.Table | None:
    if not path.exists():
        return None
    with path.open("rb") as f:
        present = pq.read_schema(f).names
        return pq.read_table(f, columns=[c for c in columns if c in present])


def _tokens_by_shard(index: pa.Table) -> dict[int, int]:
    grouped = index.group_by("shard").aggregate([("estimated_input_tokens", "sum")])
    return {
        row["shard"]: row["estimated_input_tokens_sum"] for row in grouped.to_pylist() if row["shard"] is not None
    }


def _build_assets(uc: UseCase) -> list:
    spec, source = uc.spec, uc.source
    common = dict(
        partitions_def=uc.partitions_def,
        group_name=uc.name,
        owners=list(spec.owners) or None,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )

    source_asset = dg.AssetSpec(
        uc.key("source"),
        description=f"Source table `{source.path.name}`, one partition per `{source.partition_column}`.",
        kinds={"csv"},
        group_name=uc.name,
        partitions_def=uc.partitions_def,
        metadata={"path": dg.MetadataValue.path(str(source.path))},
    )

    @dg.asset(
        key=uc.key("requests"),
        deps=[source_asset],
        kinds={"python", "jsonl"},
        description=f"One {spec.endpoint} request per source row of the partition, as JSONL "
        f"shards; rows that cannot become a request are kept as rejected rows. Model {spec.model}.",
        **common,
    )
    def requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> None:
        wh = warehouse.warehouse()
        total = 0.0
        for partition in context.partition_keys:
            if _retrying(context, wh, uc, partition):
                continue
            folder = wh.partition_dir(uc.name, "requests", partition)
            results_path = wh.partition_dir(uc.name, "results", partition) / RESULTS_FILE
            previous = PreviousAnswers.load(
                _columns(folder / INDEX_FILE, ["custom_id", "request_hash"]),
                _columns(results_path, ["custom_id", "status"]),
            )
            written = write_requests(wh, folder, read_partition_batches(source, partition), source, spec, previous)
            failpoint("requests.shards_written")
            index, names, kept = written.index, written.shards, written.kept
            if kept:
                with wh.parquet_writer(folder / CARRIED_FILE) as write, results_path.open("rb") as old:
                    for rows in carried_rows(pq.ParquetFile(old), kept):
                        write(rows)
            elif (folder / CARRIED_FILE).exists():
                (folder / CARRIED_FILE).unlink()
            wh.write_parquet(folder / INDEX_FILE, index, unique=INDEX_UNIQUE + (source.key,))
            wh.remove_stale(folder, "shard-*.jsonl", set(names))
            cost = uc.estimate(index)
            total += cost.cost_usd
            status = index["status"]
            to_send = pa.compute.sum(pa.compute.equal(status, PENDING)).as_py() or 0
            rejected = index.filter(pa.compute.equal(status, REJECTED))
            context.log.info(
                "%s %s: %d rows -> %d requests in %d shards, %d rejected, %d keep their answer",
                uc.name, partition, index.num_rows, to_send, len(names), rejected.num_rows, len(kept),
            )
            metadata = {
                "dagster/row_count": index.num_rows,
                **cost.metadata(),
                "requests": to_send,
                "rejected": rejected.num_rows,
                "kept_answers": len(kept),
                "shards": dg.MetadataValue.json([str(folder / n) for n in names]),
                "folder": dg.MetadataValue.path(str(folder)),
                "rejected_preview": dg.MetadataValue.md(
                    markdown_table(rejected.select([source.key, "error_code", "error_message"]), 10)
                ),
            }
            if index.num_rows == 0:
                metadata["note"] = f"partition {partition} has no source rows"
            context.add_asset_metadata(metadata, partition_key=partition)
        failpoint("requests.done")
        context.log.info(
            "estimated cost of %d partitions: $%.4f at batch prices", len(context.partition_keys), total
        )

    @dg.asset(
        key=uc.key("batches"),
        deps=[requests],
        kinds={"openai"},
        pool=f"{uc.name}_batch_api",
        description="Each request shard uploaded and submitted as one Batch API batch, tagged "
        "with an idempotency key so a rerun reuses the batch instead of paying twice.",
        **common,
    )
    def batches(
        context: dg.AssetExecutionContext,
        config: SubmitConfig,
        warehouse: WarehouseResource,
        batch_api: BatchAPIResource,
    ) -> None:
        wh = warehouse.warehouse()
        _check_budget(wh, uc, context.partition_keys, config.max_run_cost_usd)
        gateway = batch_api.gateway()
        for partition in context.partition_keys:
            if _retrying(context, wh, uc, partition):
                continue
            folder = wh.partition_dir(uc.name, "requests", partition)
            tokens = _tokens_by_shard(wh.read_parquet(folder / INDEX_FILE))
            shards = [
                Shard(i, str(p), p.read_bytes(), estimated_tokens=tokens.get(i, 0))
                for i, p in enumerate(sorted(folder.glob("shard-*.jsonl")))
            ]
            submissions, queued = submit_shards(
                gateway,
                use_case=uc.name,
                partition=partition,
                endpoint=spec.endpoint,
                model=spec.model,
                shards=shards,
                token_limit=batch_api.enqueued_token_limits.get(spec.model),
                log=context.log.info,
            )
            new = sum(not s.reused for s in submissions)
            context.add_asset_metadata(
                {
                    **record_metadata(submissions, queued, harvested=[]),
                    "new_batches": new,
                    "reused_batches": len(submissions) - new,
                    "queued_shards": len(queued),
                    "requests": sum(s.requests for s in submissions),
                    "provider": batch_api.describe(),
                },
                partition_key=partition,
            )
        failpoint("batches.done")

    @dg.asset(
        key=uc.key("results"),
        deps=[batches],
        pool=f"{uc.name}_batch_api",
        kinds={"python", "parquet"},
        description="One row per source row of the partition: the answer, its status, error, "
        "tokens, cost and batch id, joined by custom_id and written as Parquet.",
        check_specs=[
            dg.AssetCheckSpec(
                "every_row_once",
                asset=uc.key("results"),
                description="Every source row of the partition appears exactly once.",
            ),
            dg.AssetCheckSpec(
                "invalid_output_rate",
                asset=uc.key("results"),
                description=f"At most {spec.max_invalid_output_rate:.0%} of answers fail their schema.",
            ),
            dg.AssetCheckSpec(
                "refusal_rate",
                asset=uc.key("results"),
                description=f"At most {spec.max_refusal_rate:.0%} of requests are refused by the model.",
            ),
        ],
        **common,
    )
    def results(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        batch_api: BatchAPIResource,
    ) -> dg.MaterializeResult:
        wh, gateway = warehouse.warehouse(), batch_api.gateway()
        problems: list[str] = []
        rates = {"answered": 0, "invalid_output": 0, "refusal": 0}
        for partition in context.partition_keys:
            record = latest_record(context.instance, uc.record_keys, partition)
            if record is None:
                raise dg.Failure(f"{uc.name} {partition}: no batches submitted for this partition yet")
            folder = wh.partition_dir(uc.name, "requests", partition)
            index = wh.read_parquet(folder / INDEX_FILE)
            carried = wh.read_parquet(folder / CARRIED_FILE) if (folder / CARRIED_FILE).exists() else None
            path = wh.partition_dir(uc.name, "results", partition) / RESULTS_FILE
            counts, retry, parents, cost, preview = dict.fromkeys(STATUSES, 0), [], set(), 0.0, None
            with wh.parquet_writer(path, unique=RESULT_UNIQUE + (uc.source.key,)) as write:
                for table in harvest_slices(wh, gateway, uc, partition, record, index, carried):
                    write(table)
                    for status, n in counts_by_status(table).items():
                        counts[status] += n
                    again = retryable(table, spec.max_attempts)
                    retry += again
                    parents |= set(table.filter(pa.compute.is_in(table["custom_id"], value_set=pa.array(
                        again, pa.string())))["batch_id"].drop_null().to_pylist())
                    cost += pa.compute.sum(table["cost_usd"]).as_py() or 0.0
                    rates["refusal"] += pa.compute.sum(pa.compute.equal(table["error_code"], "refusal")).as_py() or 0
                    preview = preview or (table if table.num_rows else None)
                # Follow-ups are submitted before the Parquet is committed: a crash in between
                # leaves the previous results, so a rerun finds the same round and reuses it.
                submissions, queued = follow_ups(
                    context.log.info, wh, gateway, uc, partition, record, index, retry, parents,
                    token_limit=batch_api.enqueued_token_limits.get(spec.model),
                )
            failpoint("results.written")
            written = pq.read_table(path.open("rb"), columns=["custom_id"])  # what is on disk
            problems.extend(_accounting_problems(partition, index, written))
            retrying = sum(q.requests for q in queued) + sum(
                s.requests for s in submissions[len(record.submissions):]
            )
            context.log.info("%s %s: %s; %d requests being retried", uc.name, partition, counts, retrying)
            rates["answered"] += counts["succeeded"] + counts["invalid_output"]
            rates["invalid_output"] += counts["invalid_output"]
            context.add_asset_metadata(
                {
                    "dagster/row_count": index.num_rows,
                    **{f"status/{k}": v for k, v in counts.items()},
                    **record_metadata(submissions, queued, [s.batch_id for s in record.submissions]),
                    "retrying": retrying,
                    "parquet": dg.MetadataValue.path(str(path)),
                    "estimated_cost_usd": round(uc.estimate(index).cost_usd, 6),
                    "cost_usd": dg.MetadataValue.float(round(cost, 6)),
                    "preview": dg.MetadataValue.md(
                        markdown_table(preview.select([source.key, "status", "output", "error_message"]), 5)
                        if preview is not None else "_no rows_"
                    ),
                },
                partition_key=partition,
            )
        checks = [
            dg.AssetCheckResult(
                check_name="every_row_once",
                passed=not problems,
                description="; ".join(problems)[:2000] or None,
                metadata={"partitions": len(context.partition_keys), "problems": len(problems)},
            ),
            _rate_check("invalid_output_rate", rates["invalid_output"], rates["answered"], spec.max_invalid_output_rate),
            _rate_check("refusal_rate", rates["refusal"], rates["answered"], spec.max_refusal_rate),
        ]
        return dg.MaterializeResult(check_results=checks)

    return [source_asset, requests, batches, results]
