"""A use case declared in YAML: the Dagster Component `batch_pipeline.BatchUseCase`.

`dg scaffold defs batch_pipeline.BatchUseCase <folder>` writes a commented `defs.yaml`; Dagster
validates it against the models below (a misspelt field or a wrong type is an error naming the
file, the line and the field before anything runs) and renders its templates (`{{ env.X }}`,
`{{ context.project_root }}`). `build_defs` then builds the same `UseCase` a Python project writes and
the same definitions `definitions_for` makes, with one difference: each instance has its own
batch monitor, `<name>_batch_monitor`, watching only its own use case's partitions, because
Dagster builds each component on its own and a sensor's jobs are fixed when it is defined
(README, "As a Dagster Component").
"""

from __future__ import annotations

import functools
import importlib
import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel

from batch_pipeline.dagster.assets import use_case_definitions
from batch_pipeline.dagster.resources import BatchAPIResource, WarehouseResource
from batch_pipeline.dagster.sensor import MONITOR_NAME, build_batch_monitor
from batch_pipeline.errors import SpecError
from batch_pipeline.sources.asset import AssetSource
from batch_pipeline.sources.base import Source
from batch_pipeline.sources.csv_source import CsvSource
from batch_pipeline.sources.files import FileSource
from batch_pipeline.sources.sql import SqlSource
from batch_pipeline.spec import MAX_BYTES_PER_FILE, BatchSpec
from batch_pipeline.state.rerun import Rerun
from batch_pipeline.use_case import ResourceKeys, UseCase

Key = str | list[str]
PartitionColumn = str | dict[str, str] | None


# `model` is BatchSpec's name for the field; on the class it stays `Resolvable.model()` (pydantic
# keeps a field without a default off the class), so pydantic's shadowing warning is only noise.
warnings.filterwarnings("ignore", message='Field name "model" in "SpecModel" shadows', category=UserWarning)


class SpecModel(dg.Model, dg.Resolvable):
    """`BatchSpec`'s fields; `response_model` is a Pydantic model's dotted path."""

    name: str
    model: str  # type: ignore[assignment]  # see the warning filter above
    prompt: str
    system_prompt: str | None = None
    endpoint: str = "/v1/chat/completions"
    parameters: dict[str, Any] = {}
    response_model: str | None = None
    description: str = ""
    owners: list[str] = []
    expected_output_tokens: int | None = None
    price_per_million_tokens: list[float] | None = None
    max_cost_usd: float | None = None
    max_invalid_output_rate: float = 0.05
    max_refusal_rate: float = 0.02
    max_attempts: int = 3
    retry_backoff_seconds: float = 60.0
    max_prompt_chars: int = 32_000
    max_requests_per_shard: int | None = None
    max_shard_bytes: int = MAX_BYTES_PER_FILE
    models: dict[str, str] = {}
    input_expires_after_seconds: int | None = None
    output_expires_after_seconds: int | None = None


class CsvModel(dg.Model, dg.Resolvable):
    path: str
    key: Key
    partition_column: PartitionColumn = None
    null_values: list[str] = []
    delimiter: str = ","


class FileModel(dg.Model, dg.Resolvable):
    path: str
    key: Key
    partition_column: PartitionColumn = None
    format: str = "parquet"
    hive: bool = True
    storage_options: dict[str, Any] = {}


class SqlModel(dg.Model, dg.Resolvable):
    query: str
    key: Key
    partition_column: PartitionColumn = None
    duckdb: str | None = None
    postgres_url_env: str | None = None


class PartitionMappingModel(dg.Model, dg.Resolvable):
    """Which upstream partitions a use case's partition loads: `identity`, `all`, `last`, or
    `time_window` with offsets."""

    type: str
    start_offset: int = 0
    end_offset: int = 0


class AssetModel(dg.Model, dg.Resolvable):
    asset_key: Key
    key: Key
    partition_column: PartitionColumn = None
    partition_mapping: PartitionMappingModel | None = None


class SourceModel(dg.Model, dg.Resolvable):
    """Exactly one of the four source kinds."""

    csv: CsvModel | None = None
    file: FileModel | None = None
    sql: SqlModel | None = None
    asset: AssetModel | None = None


class TimeWindowModel(dg.Model, dg.Resolvable):
    """A time-window partitioning; the offsets that its period has (a daily one has no
    `day_offset`), and for `cron` its `cron_schedule` and key format `fmt`."""

    start_date: str
    end_date: str | None = None
    timezone: str | None = None
    minute_offset: int | None = None
    hour_offset: int | None = None
    day_offset: int | None = None
    cron_schedule: str | None = None
    fmt: str | None = None


class DimensionModel(dg.Model, dg.Resolvable):
    """One partitioning: exactly one of its kinds."""

    hourly: TimeWindowModel | None = None
    daily: TimeWindowModel | None = None
    weekly: TimeWindowModel | None = None
    monthly: TimeWindowModel | None = None
    cron: TimeWindowModel | None = None
    static: list[str] | None = None
    dynamic: str | None = None


class PartitionsModel(DimensionModel):
    """One partitioning, or `multi`: two named dimensions."""

    multi: dict[str, DimensionModel] | None = None


class ResourceKeysModel(dg.Model, dg.Resolvable):
    warehouse: str = "warehouse"
    batch_api: str = "batch_api"


class ResourcesModel(dg.Model, dg.Resolvable):
    """`WarehouseResource` and `BatchAPIResource` fields (nested providers as mappings)."""

    warehouse: dict[str, Any] = {}
    batch_api: dict[str, Any] = {}


class RerunModel(dg.Model, dg.Resolvable):
    backoff_seconds: float = 60.0
    max_failures: int = 5


class BatchUseCaseScaffolder(dg.Scaffolder):
    """Writes a commented `defs.yaml` to fill in, the use case named after its folder."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            raise SpecError("batch_pipeline.BatchUseCase is declared in YAML: scaffold it without --format python")
        name = (request.target_path.parent if request.append else request.target_path).name
        text = _TEMPLATE.format(type=request.type_name, name=name.replace("-", "_"))
        if request.append:
            with request.target_path.open("a", encoding="utf-8") as out:
                out.write("---\n" + text)
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(text, encoding="utf-8")


@dg.scaffold_with(BatchUseCaseScaffolder)
class BatchUseCase(dg.Component, dg.Model, dg.Resolvable):
    """A table's rows sent to a Batch API (OpenAI, Azure, Anthropic, Gemini), results in Parquet.

    One batch_pipeline use case, with its own batch monitor; see the README of batch_pipeline,
    "As a Dagster Component".
    """

    spec: SpecModel
    source: SourceModel
    partitions: PartitionsModel | None = None
    key_prefix: Key = []
    resource_keys: ResourceKeysModel = ResourceKeysModel()
    resources: ResourcesModel = ResourcesModel()
    monitor_interval_seconds: int = 30
    rerun: RerunModel = RerunModel()

    def use_case(self, folder: Path) -> UseCase:
        """The use case as its definitions name it (prefix and resource keys applied); relative
        paths are read from `folder`, the component's own."""
        prefix = (self.key_prefix,) if isinstance(self.key_prefix, str) else tuple(self.key_prefix)
        keys = ResourceKeys(self.resource_keys.warehouse, self.resource_keys.batch_api)
        uc = UseCase(spec=_spec(self.spec), source=_source(self.source, folder),
                     partitions_def=_partitions(self.partitions))
        return replace(uc, key_prefix=prefix, resource_keys=keys)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        try:
            uc = self.use_case(context.path)
            keys = uc.resource_keys
            resources = {keys.batch_api: _resource(BatchAPIResource, self.resources.batch_api, "batch_api"),
                         keys.warehouse: _resource(WarehouseResource, self.resources.warehouse, "warehouse")}
        except (SpecError, ValueError, TypeError, ImportError) as exc:
            raise SpecError(f"{context.path / 'defs.yaml'}: {exc}") from exc
        monitor = build_batch_monitor([uc], self.monitor_interval_seconds,
                                      Rerun(self.rerun.backoff_seconds, self.rerun.max_failures),
                                      name=f"{uc.name}_{MONITOR_NAME}")
        return dg.Definitions.merge(use_case_definitions(uc), dg.Definitions(sensors=[monitor], resources=resources))


def _spec(model: SpecModel) -> BatchSpec:
    fields = model.model_dump()
    fields["owners"] = tuple(model.owners)
    if model.price_per_million_tokens is not None:
        if len(model.price_per_million_tokens) != 2:
            raise SpecError(f"spec '{model.name}': price_per_million_tokens is [input, output] USD")
        fields["price_per_million_tokens"] = tuple(model.price_per_million_tokens)
    fields["response_model"] = _imported_model(model.response_model) if model.response_model else None
    return BatchSpec(**fields)


def _imported_model(path: str) -> type[BaseModel]:
    """The Pydantic model at a dotted path (`my_project.models.Triage`)."""
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"spec.response_model '{path}' cannot be imported: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise SpecError(f"spec.response_model '{path}' is not a Pydantic model (a dotted path like "
                        "my_project.models.Triage)")
    return found


def _located(path: str, folder: Path) -> str:
    """A URL or an absolute path as given; a relative path from the component's folder."""
    return path if "://" in path or Path(path).is_absolute() else str(folder / path)


def _source(model: SourceModel, folder: Path) -> Source:
    given = {name: value for name, value in model if value is not None}
    if len(given) != 1:
        raise SpecError(f"source takes exactly one of csv, file, sql, asset; got {sorted(given) or 'none'}")
    kind, value = next(iter(given.items()))
    key = value.key
    if kind == "csv":
        return CsvSource(Path(_located(value.path, folder)), key=key, partition_column=value.partition_column,
                         null_values=tuple(value.null_values), delimiter=value.delimiter)
    if kind == "file":
        if value.format not in ("parquet", "jsonl"):
            raise SpecError(f"source.file.format is 'parquet' or 'jsonl', not '{value.format}'")
        return FileSource(_located(value.path, folder), key=key, partition_column=value.partition_column,
                          format=value.format, hive=value.hive, storage_options=value.storage_options)
    if kind == "sql":
        duckdb = _located(value.duckdb, folder) if value.duckdb else None
        return SqlSource(value.query, key=key, partition_column=value.partition_column, duckdb=duckdb,
                         postgres_url_env=value.postgres_url_env)
    asset = value.asset_key if isinstance(value.asset_key, list) else dg.AssetKey.from_user_string(value.asset_key)
    return AssetSource(asset, key=key, partition_column=value.partition_column,
                       partition_mapping=_partition_mapping(value.partition_mapping))


def _partition_mapping(model: PartitionMappingModel | None) -> dg.PartitionMapping | None:
    if model is None:
        return None
    mappings: dict[str, Any] = {
        "identity": dg.IdentityPartitionMapping, "all": dg.AllPartitionMapping, "last": dg.LastPartitionMapping,
        "time_window": lambda: dg.TimeWindowPartitionMapping(start_offset=model.start_offset,
                                                             end_offset=model.end_offset),
    }
    if model.type not in mappings:
        raise SpecError(f"source.asset.partition_mapping.type is one of {sorted(mappings)}, not '{model.type}'")
    return mappings[model.type]()


# Each time-window kind's Dagster class and the offsets its period has.
_TIME_WINDOWS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "hourly": (dg.HourlyPartitionsDefinition, ("minute_offset",)),
    "daily": (dg.DailyPartitionsDefinition, ("minute_offset", "hour_offset")),
    "weekly": (dg.WeeklyPartitionsDefinition, ("minute_offset", "hour_offset", "day_offset")),
    "monthly": (dg.MonthlyPartitionsDefinition, ("minute_offset", "hour_offset", "day_offset")),
}


def _partitions(model: PartitionsModel | None) -> dg.PartitionsDefinition | None:
    if model is None:
        return None
    if model.multi is not None:
        if any(value is not None for name, value in model if name != "multi"):
            raise SpecError("partitions takes multi alone: each dimension goes under it")
        return dg.MultiPartitionsDefinition({name: _dimension(dim, f"partitions.multi.{name}")
                                             for name, dim in model.multi.items()})
    return _dimension(model, "partitions")


def _dimension(model: DimensionModel, where: str) -> dg.PartitionsDefinition:
    given = {name: value for name, value in model if value is not None and name != "multi"}
    if len(given) != 1:
        raise SpecError(f"{where} takes exactly one of hourly, daily, weekly, monthly, cron, static, dynamic"
                        f"{', multi' if where == 'partitions' else ''}; got {sorted(given) or 'none'}")
    kind, value = next(iter(given.items()))
    if kind == "static":
        return dg.StaticPartitionsDefinition(value)
    if kind == "dynamic":
        return dg.DynamicPartitionsDefinition(name=value)
    window: TimeWindowModel = value
    common = {"end_date": window.end_date, "timezone": window.timezone}
    if kind == "cron":
        if not window.cron_schedule or not window.fmt:
            raise SpecError(f"{where}.cron needs cron_schedule and fmt (the partition key format, e.g. %Y-%m-%d)")
        return dg.TimeWindowPartitionsDefinition(start=window.start_date, cron_schedule=window.cron_schedule,
                                                 fmt=window.fmt, end=window.end_date, timezone=window.timezone)
    cls, offsets = _TIME_WINDOWS[kind]
    extra = [name for name in ("minute_offset", "hour_offset", "day_offset", "cron_schedule", "fmt")
             if getattr(window, name) is not None and name not in offsets]
    if extra:
        raise SpecError(f"{where}.{kind} takes no {', '.join(extra)}")
    chosen = {name: getattr(window, name) for name in offsets if getattr(window, name) is not None}
    return cls(start_date=window.start_date, **common, **chosen)


def _resource(cls: type[dg.ConfigurableResource], config: dict[str, Any], field: str) -> dg.ConfigurableResource:
    """One resource object per configuration: Dagster merges component definitions only when the
    same key holds the same object, so instances configured alike share theirs."""
    try:
        return _interned(cls, json.dumps(config, sort_keys=True))
    except dg.DagsterInvalidConfigError as exc:  # names the misspelt or mistyped setting
        raise SpecError(f"resources.{field}: {exc}") from None


@functools.cache
def _interned(cls: type[dg.ConfigurableResource], config: str) -> dg.ConfigurableResource:
    return cls.model_validate(json.loads(config))


_TEMPLATE = """\
type: {type}

attributes:
  # How each row becomes one request: {{column}} placeholders are filled from the row's cells.
  spec:
    name: {name}   # asset group, jobs and warehouse folder
    model: gpt-4o-mini   # the model on OpenAI (and Azure OpenAI)
    # models: {{anthropic: claude-haiku-4-5, gemini: gemini-2.5-flash}}   # the model on other providers
    # system_prompt: You triage support tickets.
    prompt: "Ticket {{ticket_id}}: {{subject}}\\n\\n{{body}}\\n\\nGive the team and the urgency."
    # endpoint: /v1/chat/completions   # or /v1/responses, /v1/embeddings, /v1/moderations
    # parameters: {{max_tokens: 200}}
    # response_model: my_project.models.Triage   # a Pydantic model: its fields become typed columns
    # max_cost_usd: 5.0                # refuse a partition whose estimate is higher, before any upload
    # max_attempts: 3                  # and every other BatchSpec field

  # Where the rows come from: exactly one of csv, file, sql, asset. A relative path is read from
  # this folder; "{{{{ context.project_root }}}}/data/tickets.csv" and URLs (s3://...) work too.
  source:
    csv:
      path: tickets.csv
      key: ticket_id                 # or a composite key: [site, ticket_id]
      partition_column: created_date
    # file: {{path: orders/, format: parquet, key: order_id, partition_column: day}}   # or format: jsonl
    # sql: {{query: "select * from tickets", duckdb: shop.duckdb, key: ticket_id, partition_column: created_date}}
    #      (PostgreSQL: postgres_url_env: SHOP_DB_URL, the variable that holds the URL)
    # asset: {{asset_key: raw/tickets, key: ticket_id}}   # an upstream asset, loaded by its IO manager

  # Leave out for one unpartitioned table.
  partitions:
    daily: {{start_date: "2026-11-01"}}   # hourly, weekly, monthly: also timezone, end_date, offsets
    # cron: {{start_date: "2026-11-02", cron_schedule: "0 6 * * 1-5", fmt: "%Y-%m-%d"}}
    # static: [amer, emea, apac]
    # dynamic: customers
    # multi: {{day: {{daily: {{start_date: "2026-11-01"}}}}, region: {{static: [amer, emea]}}}}

  # key_prefix: llm                  # before every asset key, job, monitor and warehouse folder
  # resource_keys: {{warehouse: warehouse, batch_api: batch_api}}
  # resources: {{warehouse: {{root: /data/warehouse}}, batch_api: {{harvest_wait_seconds: 5}}}}
  # monitor_interval_seconds: 30     # this use case's batch monitor: {name}_batch_monitor

# post_processing:                   # Dagster's own: owners, tags, kinds, group of the assets
#   assets:
#     - target: "*"
#       attributes: {{owners: ["team:support"], tags: {{domain: support}}}}
"""
