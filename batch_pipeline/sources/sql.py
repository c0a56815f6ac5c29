"""A SQL query as a source: against a DuckDB database file, or a PostgreSQL database through the
ADBC driver, which hands rows back as Arrow record batches (no per-row Python objects).

The query is wrapped, never edited: `SELECT <columns> FROM (<query>) AS source WHERE <partition>
ORDER BY <columns>`, with the partition's values bound as parameters (`$1`, `$2`), never formatted
into the text. SQL promises no row order without `ORDER BY` (a parallel scan or an update changes
it), and of two rows with one key the first is sent and the other rejected: ordered by the
columns read (the key first; `SqlSource._order`), the same row wins on every run.
The PostgreSQL URL comes from an environment variable at run time, so its password is in no
code, metadata or message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from batch_pipeline.sources.base import BATCH_ROWS, Source, SourceError, absolute, masked
from batch_pipeline.sources.partitions import Selection

_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# The source whose connection `SqlSource.opened` holds, and its cursor.
_HELD: ContextVar[tuple[SqlSource, Any] | None] = ContextVar("held_sql_cursor", default=None)


@dataclass(frozen=True)
class SqlSource(Source):
    """Rows of `query`, run on the DuckDB file `duckdb` or on the PostgreSQL database whose URL
    (`postgresql://user:password@host/db`) is in the environment variable `postgres_url_env`."""

    query: str
    key: str | Sequence[str]
    partition_column: str | Mapping[str, str] | None = None
    duckdb: str | os.PathLike[str] | None = None
    postgres_url_env: str | None = None
    kind = "sql"

    def __post_init__(self) -> None:
        if (self.duckdb is None) == (self.postgres_url_env is None):
            raise ValueError("a SQL source names one database: duckdb='file.duckdb' or "
                             "postgres_url_env='NAME_OF_THE_VARIABLE_WITH_THE_URL'")
        if self.duckdb is not None:
            object.__setattr__(self, "duckdb", absolute(self.duckdb, "DuckDB database"))

    def describe(self) -> str:
        where = f"DuckDB '{self.duckdb}'" if self.duckdb else f"PostgreSQL (${self.postgres_url_env})"
        return f"SQL query {' '.join(self.query.split())[:200]!r} on {where}"

    def schema(self) -> pa.Schema:
        with self._cursor() as cursor:
            return self._schema(cursor)

    def _schema(self, cursor: Any) -> pa.Schema:
        return self._fetch(cursor, f"SELECT * FROM ({self._body()}) AS source LIMIT 0", []).read_all().schema

    def read(self, selection: Selection, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self._cursor() as cursor:  # one connection: opening one costs tens of milliseconds
            schema = self._schema(cursor)
            where, params = selection.sql(schema)
            names = schema.names if columns is None else [*dict.fromkeys([*columns, *selection.columns])]
            quoted = ['"' + n.replace('"', '""') + '"' for n in names]
            reader = self._fetch(cursor, f"SELECT {', '.join(quoted)} FROM ({self._body()}) AS source WHERE {where} "
                                 f"ORDER BY {self._order(quoted)}", params)
            yield from masked(_batches(reader, self), selection, columns)

    def _order(self, quoted: list[str]) -> str:
        """The columns read, key first, in an order every type has: DuckDB orders any of its
        types; PostgreSQL orders its key columns as they are and the others as text (a `json`
        column has no ordering). Ordering by a text cast in DuckDB would halve the rows per second
        read (benchmarks/bench_sources.py), since every cast is computed before the sort."""
        if self.duckdb:
            return ", ".join(quoted)
        keys = len(self.key_columns)
        return ", ".join([*quoted[:keys], *(f"CAST({n} AS TEXT)" for n in quoted[keys:])])

    def _body(self) -> str:
        return self.query.strip().rstrip(";")

    @contextmanager
    def opened(self) -> Iterator[None]:
        """One connection for the block's `schema` and `read` calls (in this thread): a build
        would otherwise open two, each costing tens of milliseconds."""
        with self._connect() as cursor:
            token = _HELD.set((self, cursor))
            try:
                yield
            finally:
                _HELD.reset(token)

    def _cursor(self) -> AbstractContextManager[Any]:
        held = _HELD.get()
        return nullcontext(held[1]) if held is not None and held[0] is self else self._connect()

    def _connect(self) -> AbstractContextManager[Any]:
        return _duckdb_cursor(Path(self.duckdb)) if self.duckdb else _postgres_cursor(self)

    def _fetch(self, cursor: Any, sql: str, params: list[object]) -> pa.RecordBatchReader:
        try:
            if self.duckdb:  # a relation streams Arrow batches without the DB-API's extra copy
                return cursor.sql(sql, params=params or None).to_arrow_reader(BATCH_ROWS)
            cursor.execute(sql, params or None)
            return cursor.fetch_record_batch()
        except Exception as exc:  # each driver has its own error classes; the message is what matters
            raise SourceError(f"{self.describe()} failed: {scrub(str(exc))}") from None


def _batches(reader: pa.RecordBatchReader, source: SqlSource) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except Exception as exc:  # a driver error while streaming: name the query, hide the URL
        raise SourceError(f"{source.describe()} failed: {scrub(str(exc))}") from None


@contextmanager
def _duckdb_cursor(path: Path) -> Iterator[Any]:
    import duckdb

    if not path.exists():
        raise SourceError(f"DuckDB database '{path}' does not exist")
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise SourceError(f"DuckDB database '{path}' cannot be opened: {exc}") from None
    with connection:
        yield connection.cursor()


@contextmanager
def _postgres_cursor(source: SqlSource) -> Iterator[Any]:
    assert source.postgres_url_env is not None
    url = os.environ.get(source.postgres_url_env)
    if not url:
        raise SourceError(f"{source.describe()}: the environment variable "
                          f"{source.postgres_url_env} that holds the database URL is not set")
    try:
        from adbc_driver_postgresql import dbapi
    except ImportError:
        raise SourceError("a PostgreSQL source needs the extra: pip install 'batch_pipeline[sql]'") from None
    try:
        connection = dbapi.connect(url)
    except Exception as exc:  # the driver's own error types; never show the URL
        raise SourceError(f"{source.describe()}: cannot connect: {scrub(str(exc))}") from None
    with connection, connection.cursor() as cursor:
        yield cursor


def scrub(message: str) -> str:
    """The message without any password a URL in it carries."""
    return _PASSWORD.sub(r"\1***@", message)
