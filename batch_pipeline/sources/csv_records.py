"""A CSV file as tables of whole records, every cell as written, every row with its line.

pyarrow's streaming reader cuts a file into blocks at line breaks it takes for record ends: a
quoted cell with line breaks that crosses a block boundary is cut, a row bigger than a block
stops the table, and an unterminated quote silently takes every following line into one cell.
So the file is cut here, at record ends only, and a block goes to pyarrow (fast) when pyarrow
reads it exactly as written: one line per record, no text after a closing quote. Any other
block is read by the `csv` module in strict mode; a record it cannot align rejects its first
line (naming the line and the column) and reading goes on from the next line, so a stray quote
never swallows the rows after it.

Any one-character delimiter is read the same way (`delimiter="\t"` for TSV); cells are quoted
with `"` whatever the delimiter. A table is a local path or an fsspec URL (`s3://...`), opened
with `upath.UPath`, and every message names it as it was given.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from upath import UPath

from batch_pipeline.errors import SourceError
from batch_pipeline.spec import MAX_BYTES_PER_FILE

# Columns every table read here has after the header's: why a line could not be read as a row
# (null for a good row), and the line the row starts on (the header is line 1).
SOURCE_ERROR = "_source_error"
SOURCE_LINE = "_source_line"
BLOCK_SIZE = 8 << 20
# A quoted cell still open after this much text is an unterminated quote: no request can be
# bigger than the provider's input file.
MAX_RECORD_BYTES = MAX_BYTES_PER_FILE
_BOM = b"\xef\xbb\xbf"
# Cells as big as a request may be; the csv module refuses fields over 128 KiB by default.
csv.field_size_limit(max(csv.field_size_limit(), 2 * MAX_RECORD_BYTES))
_QUOTED = re.compile(r'"([^"]*+(?:""[^"]*+)*+)"')  # possessive: a cut never ends a cell early
# A local path (`str` or `os.PathLike`) or an fsspec URL such as `s3://bucket/table.csv`.
TablePath: TypeAlias = str | os.PathLike[str]


@dataclass(frozen=True)
class _Dialect:
    """What a delimiter changes, worked out once per delimiter rather than once per row."""

    delimiter: str
    ends: str  # what ends an unquoted cell: the delimiter or a line break
    suspect: str  # RE2: text pyarrow would read otherwise than it is written (see `_suspect`)
    unquoted: re.Pattern[str]
    fast: bool  # pyarrow takes a one-byte delimiter only; any other is read strictly
    kind: str  # the word for a line in messages


@functools.lru_cache(maxsize=16)
def _dialect(delimiter: str) -> _Dialect:
    """The delimiter's dialect, or a ValueError for one no record can be split by."""
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(
            f"delimiter {delimiter!r} cannot separate cells: it must be one character, "
            "not a quote or a line break"
        )
    d = "\\" + delimiter if delimiter in "\\[]^-" else delimiter  # literal in a class (re, RE2)
    # A closing quote followed by more text (`"ab"cd` becomes `abcd`), or an empty quoted cell
    # followed by text. RE2 scans a block at ~300 MB/s, only when it has a quote at all.
    suspect = rf'[^{d}\r\n"]"[^{d}\r\n"]|(?:^|[{d}\r\n])""[^{d}\r\n"]'
    return _Dialect(
        delimiter,
        delimiter + "\r\n",
        suspect,
        re.compile(rf"[^{d}\r\n]*"),
        delimiter.isascii(),
        "TSV" if delimiter == "\t" else "CSV",
    )


@dataclass
class _Rows:
    """Rows read by the strict tokenizer, one list of cells each, made columns at the end."""

    names: Sequence[str]
    nulls: frozenset[str]
    records: list[Sequence[str | None]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def add(self, cells: Sequence[str | None], line: int) -> None:
        self.records.append(cells)
        self.lines.append(line)

    def add_error(self, cells: list[str], line: int, error: str) -> None:
        """A line that is no row: its cells as well as they split, and why."""
        self.errors[len(self.records)] = error
        self.add([*cells, *[None] * len(self.names)][: len(self.names)], line)

    def table(self) -> pa.Table:
        columns = list(zip(*self.records, strict=True)) if self.records else [()] * len(self.names)
        nulls = pa.array(sorted(self.nulls), pa.string())
        arrays = []
        for column in columns:
            values = pa.array(column, pa.string())
            arrays.append(
                pc.if_else(pc.is_in(values, value_set=nulls), pa.scalar(None, pa.string()), values)
            )
        errors = (
            [self.errors.get(i) for i in range(len(self.records))]
            if self.errors
            else pa.nulls(len(self.records), pa.string())
        )
        arrays += [pa.array(errors, pa.string()), pa.array(self.lines, pa.int64())]
        return pa.Table.from_arrays(arrays, names=[*self.names, SOURCE_ERROR, SOURCE_LINE])


@dataclass(frozen=True)
class Header:
    """A table's column names and where its first data line starts."""

    names: list[str]
    offset: int
    first_line: int


def open_table(path: TablePath) -> BinaryIO:
    """The file, local or behind an fsspec URL, or a SourceError that says what is wrong with it
    (naming the path as given: a missing backend or an unknown protocol is the table's fault too).
    """
    try:
        return UPath(path).open("rb")  # a local path opens as a plain file, no fsspec layer
    except FileNotFoundError:
        raise SourceError(f"CSV file '{path}' does not exist") from None
    except (OSError, ValueError, ImportError) as exc:
        raise SourceError(f"CSV file '{path}' cannot be opened: {exc}") from exc


def read_header(path: TablePath, delimiter: str = ",") -> Header:
    """The header's names: the first non-blank record, read as strictly as any row."""
    dialect = _dialect(delimiter)
    with open_table(path) as f:
        data, eof = b"", False
        while True:
            chunk = f.read(max(64 << 10, len(data)))
            data, eof = data + chunk, not chunk
            cut = len(data) if eof else _last_break(data)
            if cut is None:
                continue
            start = len(_BOM) if data.startswith(_BOM) else 0
            text = _decode(data[start:cut], path, 1)
            blank = len(text) - len(text.lstrip("\r\n"))
            record = _record(text, blank, eof, dialect)
            if record is not None:
                break
    cells, end, error = record
    if not text.strip() and delimiter not in text:  # a line of tabs is a (bad) header too
        raise SourceError(f"CSV file '{path}' is empty: it has no header line")
    if error is not None:
        raise SourceError(
            f"CSV file '{path}': the header line cannot be read: column "
            f"{error[0] + 1} {error[1]}"
        )
    return Header(cells, start + len(text[:end].encode("utf-8")), 1 + _count_breaks(text[:end]))


def read_records(
    path: TablePath,
    header: Header,
    null_values: Sequence[str] = (),
    block_size: int = BLOCK_SIZE,
    delimiter: str = ",",
) -> Iterator[pa.Table]:
    """The table's rows after the header, one block of whole records at a time, in file order.

    Every table has the header's columns (text, an empty cell or a `null_values` marker as
    null), then `_source_error` and `_source_line`. A line that cannot be aligned with the
    header is a row whose `_source_error` says why, its cells split as well as they can be.
    `delimiter` must be the one `header` was read with.
    """
    nulls, dialect = frozenset(["", *null_values]), _dialect(delimiter)
    with open_table(path) as f:
        f.seek(header.offset)
        carry, line, eof = b"", header.first_line, False
        while not eof or carry:
            data = b"" if eof else f.read(max(block_size, len(carry)))
            eof = eof or not data
            buffer = carry + data if carry else data
            cut = len(buffer) if eof else _last_break(buffer)
            if cut is None:
                carry = buffer
                continue
            block, carry = buffer[:cut], buffer[cut:]
            if not block:
                continue
            if eof and not block.endswith((b"\n", b"\r")):
                block += b"\n"
            fast = _fast_block(block, header.names, line, nulls, path, dialect)
            if fast is not None:
                line += fast[1]
                yield fast[0]
                continue
            rows, used, line = _strict_block(block, header.names, line, nulls, eof, path, dialect)
            carry = block[used:] + carry
            if rows.lines:
                yield rows.table()


def _last_break(buffer: bytes) -> int | None:
    """Just after the buffer's last line break, or None (a `\\r` that may start `\\r\\n` waits)."""
    newline = buffer.rfind(b"\n")
    if newline >= 0:
        return newline + 1
    cr = buffer.rfind(b"\r", 0, len(buffer) - 1)
    return cr + 1 if cr >= 0 else None


def _decode(data: bytes, path: TablePath, first_line: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + _count_breaks(data[: exc.start].decode("utf-8", "replace"))
        raise SourceError(
            f"CSV file '{path}' is not UTF-8 text: line {line} has the byte "
            f"{data[exc.start : exc.start + 1]!r}; save the table as UTF-8"
        ) from None


def _count_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _single_string(block: bytes) -> pa.Array:
    """The block as a one-value binary array, without a copy, for a whole-block regex."""
    offsets = pa.py_buffer(struct.pack("<qq", 0, len(block)))
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(block)])


def _fast_block(
    block: bytes,
    names: list[str],
    first_line: int,
    nulls: frozenset[str],
    path: TablePath,
    dialect: _Dialect,
) -> tuple[pa.Table, int] | None:
    """The block read by pyarrow and its number of lines, or None when pyarrow would not read it
    exactly as written (then `_strict_block` reads it).

    Blank lines are parsed as rows too, so that every line is one record: without quotes a line
    break always ends a record, and with quotes the line count proves no record spans lines.
    """
    quoted = b'"' in block
    if len(names) < 2 or not dialect.fast or (quoted and _suspect(block, dialect)):
        return None
    try:
        table, bad = _parse(block, names, nulls, dialect.delimiter)
    except pa.ArrowInvalid:
        _decode(block, path, first_line)  # raises for text that is not UTF-8
        return None
    records = table.num_rows + len(bad)
    if quoted and (records != block.count(b"\n") or _ends_open(table, bad, records)):
        return None  # a record spans lines (a quoted line break, an open quote)
    numbers = _numbers(first_line, records)
    invalid = {row.number - 1 for row in bad}  # records are numbered from 1
    if invalid:
        numbers = pa.array(
            [n for i, n in enumerate(numbers.to_pylist()) if i not in invalid], pa.int64()
        )
    table = table.append_column(SOURCE_ERROR, pa.nulls(table.num_rows, pa.string()))
    table = _without_blank_lines(table.append_column(SOURCE_LINE, numbers), block, first_line)
    if bad:
        rows = _Rows(names, nulls)
        for row in bad:
            cells, line = _split_line(row.text, dialect), first_line + row.number - 1
            reason = f"expected {len(names)} fields, got {len(cells)}"
            rows.add_error(
                cells,
                line,
                f"malformed {dialect.kind} line {row.text[:60]!r} (line {line}): {reason}",
            )
        table = pa.concat_tables([table, rows.table()]).sort_by(SOURCE_LINE)
    return table, records


def _suspect(block: bytes, dialect: _Dialect) -> bool:
    """Whether pyarrow could read a block with quotes otherwise than it is written: text after
    a closing quote, or a lone carriage return (a line break for pyarrow inside a quoted cell)."""
    if pc.any(pc.match_substring_regex(_single_string(block), dialect.suspect)).as_py():
        return True
    return b"\r" in block and block.count(b"\r") != block.count(b"\r\n")


def _parse(
    block: bytes, names: list[str], nulls: frozenset[str], delimiter: str
) -> tuple[pa.Table, list[pacsv.InvalidRow]]:
    """pyarrow's reading of a block: a single thread numbers the lines it cannot align."""
    bad: list[pacsv.InvalidRow] = []

    def keep(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(block),
        read_options=pacsv.ReadOptions(
            column_names=names, block_size=len(block) + 1, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            newlines_in_values=True,
            invalid_row_handler=keep,
            ignore_empty_lines=False,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=sorted(nulls),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    return table, bad


_NUMBERS = pa.array([], pa.int64())


def _numbers(first: int, count: int) -> pa.Array:
    """`first`, `first + 1`, ... `count` numbers, from a cached range (no Python int per row)."""
    global _NUMBERS
    if len(_NUMBERS) < count:
        _NUMBERS = pa.array(range(max(count, 1 << 16)), pa.int64())
    return pc.add(_NUMBERS.slice(0, count), pa.scalar(first, pa.int64()))


def _without_blank_lines(table: pa.Table, block: bytes, first_line: int) -> pa.Table:
    """The rows that are not blank lines (pyarrow reads a blank line as a row of nulls)."""
    empty = functools.reduce(pc.and_, (pc.is_null(table[name]) for name in table.column_names[:-2]))
    if not pc.any(empty).as_py():
        return table
    lines = io.StringIO(block.decode("utf-8"), newline="").readlines()
    blank = pa.array(
        [not lines[n - first_line].rstrip("\r\n") for n in table[SOURCE_LINE].to_pylist()]
    )
    return table.filter(pc.invert(pc.and_(empty, blank)))


def _ends_open(table: pa.Table, bad: list[pacsv.InvalidRow], records: int) -> bool:
    """Whether the block's last record holds a line break: a quote still open where it ends.
    pyarrow drops the break from a bad row's text, so an odd count of quotes says it too."""
    if bad and bad[-1].number == records:
        text = bad[-1].text
        return "\n" in text or "\r" in text or text.count('"') % 2 == 1
    if not table.num_rows:
        return False
    last = table.slice(table.num_rows - 1).to_pylist()[0].values()
    return any(cell is not None and ("\n" in cell or "\r" in cell) for cell in last)


def _split_line(text: str, dialect: _Dialect) -> list[str]:
    """A line's cells as well as they can be told apart, for a row that is rejected anyway."""
    cells, pos = [], 0
    while pos <= len(text):
        value = ""
        if text.startswith('"', pos) and (m := _QUOTED.match(text, pos)):
            value, pos = m.group(1).replace('""', '"'), m.end()
        end = text.find(dialect.delimiter, pos)
        end = len(text) if end < 0 else end
        cells.append(value + text[pos:end])
        pos = end + 1
    return cells


def _strict_block(
    block: bytes,
    names: list[str],
    first_line: int,
    nulls: frozenset[str],
    at_end: bool,
    path: TablePath,
    dialect: _Dialect,
) -> tuple[_Rows, int, int]:
    """The block's complete records read strictly (`csv`, strict): (rows, bytes used, next line).

    A record still open where the block ends is left for the next block, with more text,
    unless the file ends there or it is already longer than any request could be: then its
    quote is unterminated. A record that cannot be aligned rejects its first line only, and
    reading goes on from the next line, so lines taken in by a stray quote come back as rows.
    """
    lines = io.StringIO(_decode(block, path, first_line), newline="").readlines()  # \n, \r\n, \r
    rows, width, base = _Rows(names, nulls), len(names), 0
    reader = csv.reader(iter(lines), delimiter=dialect.delimiter, strict=True)
    while True:
        start = base + reader.line_num
        try:
            cells = next(reader)
            if len(cells) == width:
                rows.add(cells, first_line + start)
                continue
            if not cells:  # a blank line is no row
                continue
            problem = f"expected {width} fields, got {len(cells)}"
            if base + reader.line_num - start > 1:
                problem += " (a quoted cell runs on to a later line: is a quote unbalanced?)"
        except StopIteration:
            start = len(lines)
            break
        except csv.Error:
            read = base + reader.line_num  # the lines the record took before it failed
            record = "".join(lines[start:read])
            if (
                read == len(lines)
                and not at_end
                and len(record) <= MAX_RECORD_BYTES
                and _record(record, 0, False, dialect) is None
            ):
                break  # still open where the block ends: read again with more text
            problem = _problem(record, names, dialect)
        first = lines[start].rstrip("\r\n")
        rows.add_error(
            _split_line(first, dialect),
            first_line + start,
            f"malformed {dialect.kind} line {first[:60]!r} (line {first_line + start}): {problem}",
        )
        if base + reader.line_num - start > 1:  # read on from the next line: nothing is swallowed
            base = start + 1
            reader = csv.reader(iter(lines[base:]), delimiter=dialect.delimiter, strict=True)
    return rows, len("".join(lines[:start]).encode("utf-8")), first_line + start


def _problem(text: str, names: list[str], dialect: _Dialect) -> str:
    """Why the record at the start of `text` cannot be read, naming the column."""
    record = _record(text, 0, True, dialect)
    if record is None or record[2] is None:
        return "it cannot be split into cells"
    column, problem = record[2]
    return (
        f"column '{names[column]}' {problem}"
        if column < len(names)
        else f"column {column + 1} {problem}"
    )


Record = tuple[list[str], int, tuple[int, str] | None]


def _record(text: str, pos: int, at_end: bool, dialect: _Dialect) -> Record | None:
    """The record starting at `pos`: (cells, where the next record starts, and for a malformed
    one the column and what is wrong), or None when the record may go on past the end of
    `text` and `at_end` is false."""
    newline = text.find("\n", pos)
    if newline < 0 and not at_end:
        return None
    stop = len(text) if newline < 0 else newline + 1
    line = text[pos:stop].rstrip("\r\n")
    if '"' not in line and "\r" not in line:
        return line.split(dialect.delimiter), stop, None
    cells: list[str] = []
    while True:
        if text.startswith('"', pos):
            m = _QUOTED.match(text, pos)
            if m is None:
                return (
                    None
                    if not at_end
                    else (cells, len(text), (len(cells), "opens a quote that is never closed"))
                )
            value, pos = m.group(1).replace('""', '"'), m.end()
            if pos < len(text) and text[pos] not in dialect.ends:
                return (
                    cells,
                    pos,
                    (
                        len(cells),
                        f"has text after its closing quote ({text[pos : pos + 20]!r}); "
                        "a quote inside a quoted cell is written twice",
                    ),
                )
        else:
            m = dialect.unquoted.match(text, pos)
            value, pos = m.group() if m else "", m.end() if m else pos
        cells.append(value)
        if pos < len(text) and text[pos] == dialect.delimiter:
            pos += 1
        elif pos >= len(text):
            return cells, pos, None
        else:
            return cells, pos + (2 if text.startswith("\r\n", pos) else 1), None
