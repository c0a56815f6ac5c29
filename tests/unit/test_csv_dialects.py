"""Other delimiters (TSV, `;`, any one character) and fsspec URLs, read like a local CSV."""

from __future__ import annotations

from typing import Any

import fsspec
import pytest

from batch_pipeline.sources.csv_records import (
    SOURCE_ERROR,
    SOURCE_LINE,
    SourceError,
    read_header,
    read_records,
)

TSV = (
    "id\tname\tnotes\n"
    '1\t"tab\there"\tplain\n'
    '2\tsecond\t"two\nlines\twith a tab"\n'
    "3\ttoo\tmany\tcells\n"
    '4\t"a, comma ""quoted"""\t\n'
)
# Every kind of line the reader knows, comma-separated: quoted commas and line breaks, doubled
# quotes, too many cells, text after a closing quote, a blank line, an unclosed quote, a null
# marker, CRLF and a last line with no line break.
CORPUS = (
    'id,name,notes\n1,plain,text\n2,"quoted, comma","two\nlines"\n3,"a ""quote""",x\n'
    '4,too,many,fields\n5,"ab"cd,x\n\n6,"never closed,x\n7,after,open\n8,,NA\r\n9,last,"row"'
)


def read(path: Any, block_size: int = 8 << 20, **kw: Any) -> list[dict[str, Any]]:
    header = read_header(path, **kw)
    tables = read_records(path, header, ("NA",), block_size, **kw)
    return [row for table in tables for row in table.to_pylist()]


@pytest.mark.parametrize("block_size", [8 << 20, 16, 1])
def test_tsv_quoted_cells_keep_their_tabs_and_line_breaks(tmp_path, block_size):
    path = tmp_path / "t.tsv"
    path.write_text(TSV)
    rows = read(path, block_size, delimiter="\t")
    assert [r[SOURCE_LINE] for r in rows] == [2, 3, 5, 6]
    assert rows[0] | {SOURCE_LINE: 0} == {
        "id": "1",
        "name": "tab\there",
        "notes": "plain",
        SOURCE_ERROR: None,
        SOURCE_LINE: 0,
    }
    assert rows[1]["notes"] == "two\nlines\twith a tab" and rows[1][SOURCE_ERROR] is None
    assert rows[3]["name"] == 'a, comma "quoted"' and rows[3]["notes"] is None


@pytest.mark.parametrize("block_size", [8 << 20, 1])
def test_a_malformed_tsv_line_is_a_row_naming_its_line(tmp_path, block_size):
    path = tmp_path / "t.tsv"
    path.write_text(TSV + '5\t"ab"cd\tx\n6\tlast\trow\n')
    rows = {r[SOURCE_LINE]: r for r in read(path, block_size, delimiter="\t")}
    assert rows[5]["id"] == "3" and rows[5]["notes"] == "many"
    assert rows[5][SOURCE_ERROR] == (
        "malformed TSV line '3\\ttoo\\tmany\\tcells' (line 5): expected 3 fields, got 4"
    )
    assert rows[7][SOURCE_ERROR].startswith("malformed TSV line '5\\t\"ab\"cd\\tx' (line 7): ")
    assert "column 'name' has text after its closing quote" in rows[7][SOURCE_ERROR]
    assert rows[8] == {
        "id": "6",
        "name": "last",
        "notes": "row",
        SOURCE_ERROR: None,
        SOURCE_LINE: 8,
    }


def test_a_semicolon_file_keeps_commas_in_its_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id;price;notes\n1;3,50;"a; b"\n2;4,00;plain, with comma\n3;x\n')
    rows = read(path, delimiter=";")
    assert [(r["id"], r["price"], r["notes"]) for r in rows] == [
        ("1", "3,50", "a; b"),
        ("2", "4,00", "plain, with comma"),
        ("3", "x", None),
    ]
    assert rows[2][SOURCE_ERROR] == "malformed CSV line '3;x' (line 4): expected 3 fields, got 2"
    assert read_header(path).names == ["id;price;notes"]  # the default is still a comma


@pytest.mark.parametrize("delimiter", ["\t", ";", "|", "]", "^", "-", "\\", " ", "§"])
@pytest.mark.parametrize("block_size", [8 << 20, 16])
def test_any_delimiter_reads_like_a_comma(tmp_path, delimiter, block_size):
    """The corpus with its commas and `delimiter` swapped reads to the same rows, swapped back
    (`§` is more than a byte: pyarrow cannot take it, so only the strict reader reads it)."""
    swap = str.maketrans({",": delimiter, delimiter: ","})
    (tmp_path / "comma.csv").write_text(CORPUS, encoding="utf-8")
    (tmp_path / "other.csv").write_text(CORPUS.translate(swap), encoding="utf-8")
    expected = read(tmp_path / "comma.csv", block_size)
    got = read(tmp_path / "other.csv", block_size, delimiter=delimiter)
    assert read_header(tmp_path / "other.csv", delimiter=delimiter).names == ["id", "name", "notes"]
    assert [
        {
            k: v.translate(swap) if isinstance(v, str) and k != SOURCE_ERROR else v
            for k, v in r.items()
        }
        | {SOURCE_ERROR: r[SOURCE_ERROR] is None}
        for r in got
    ] == [r | {SOURCE_ERROR: r[SOURCE_ERROR] is None} for r in expected]


def test_the_default_comma_reading_is_unchanged(tmp_path):
    """Pinned from the reader before delimiters and URLs: every row, cell and message."""
    path = tmp_path / "t.csv"
    path.write_text(CORPUS)
    header = read_header(path)
    assert (header.names, header.offset, header.first_line) == (["id", "name", "notes"], 14, 2)
    rows = read(path)
    assert [(r["id"], r["name"], r["notes"], r[SOURCE_LINE]) for r in rows] == [
        ("1", "plain", "text", 2),
        ("2", "quoted, comma", "two\nlines", 3),
        ("3", 'a "quote"', "x", 5),
        ("4", "too", "many", 6),
        ("5", "abcd", "x", 7),
        ("6", '"never closed', "x", 9),
        ("7", "after", "open", 10),
        ("8", None, None, 11),
        ("9", "last", "row", 12),
    ]
    errors = {r[SOURCE_LINE]: r[SOURCE_ERROR] for r in rows if r[SOURCE_ERROR]}
    assert sorted(errors) == [6, 7, 9]
    assert errors[6] == "malformed CSV line '4,too,many,fields' (line 6): expected 3 fields, got 4"
    assert errors[7] == (
        "malformed CSV line '5,\"ab\"cd,x' (line 7): column 'name' has text after its closing "
        "quote ('cd,x\\n'); a quote inside a quoted cell is written twice"
    )
    assert errors[9].startswith("malformed CSV line '6,\"never closed,x' (line 9): ")
    assert read(path, delimiter=",") == rows == read(str(path))


@pytest.fixture
def memory_dir(tmp_path):
    """A folder of its own in fsspec's in-process memory filesystem, removed afterwards."""
    fs, root = fsspec.filesystem("memory"), f"/{tmp_path.name}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("delimiter, text", [(",", CORPUS), ("\t", TSV)])
def test_a_memory_url_reads_like_the_local_file(tmp_path, memory_dir, delimiter, text):
    fs, root = memory_dir
    local = tmp_path / "t.csv"
    local.write_text(text)
    fs.pipe_file(f"{root}/t.csv", local.read_bytes())
    url = f"memory://{root.lstrip('/')}/t.csv"
    assert read_header(url, delimiter=delimiter) == read_header(local, delimiter=delimiter)
    assert read(url, delimiter=delimiter) == read(local, delimiter=delimiter)
    assert read(url, 16, delimiter=delimiter) == read(local, 16, delimiter=delimiter)


def test_errors_name_the_url_as_given(memory_dir):
    fs, root = memory_dir
    missing = f"memory://{root.lstrip('/')}/missing.csv"
    with pytest.raises(SourceError, match=f"CSV file '{missing}' does not exist"):
        read_header(missing)
    fs.pipe_file(f"{root}/latin1.csv", "id,name\n1,caf\xe9\n".encode("latin-1"))
    url = f"memory://{root.lstrip('/')}/latin1.csv"
    with pytest.raises(SourceError, match=f"CSV file '{url}' is not UTF-8 text: line 2"):
        read(url)
    with pytest.raises(SourceError, match="CSV file 'nosuchfs://x.csv' cannot be opened"):
        read_header("nosuchfs://x.csv")


def test_a_missing_local_file_is_named_as_given(tmp_path):
    with pytest.raises(SourceError, match="' does not exist"):
        read_header(tmp_path / "missing.csv")
    relative = "no/such/table.tsv"
    with pytest.raises(SourceError, match=f"CSV file '{relative}' does not exist"):
        read_header(relative, delimiter="\t")


@pytest.mark.parametrize("delimiter", ["", "\t\t", '"', "\n", "\r"])
def test_a_delimiter_that_cannot_split_cells_is_refused(tmp_path, delimiter):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="cannot separate cells"):
        read_header(path, delimiter=delimiter)


def test_a_quoted_line_break_cut_by_a_block_boundary_stays_one_record(tmp_path):
    """pyarrow drops the line break from a bad row's text when a block ends inside a quoted cell
    that is not the last column; the block must still go to the strict reader, whole."""
    path = tmp_path / "t.csv"
    path.write_text("id,text,z\n" + "".join(f'k{i},"line1\nline2",y\n' for i in range(30)))
    for block_size in range(16, 200):
        rows = [r for table in read_records(path, read_header(path), (), block_size) for r in table.to_pylist()]
        assert [r["id"] for r in rows] == [f"k{i}" for i in range(30)], block_size
        assert not any(r["_source_error"] for r in rows) and {r["text"] for r in rows} == {"line1\nline2"}
