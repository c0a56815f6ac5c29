"""Image generation and text completions without Dagster: the local API's PNGs and answers (read
by the `openai` SDK's own types), their parsing into result rows (DuckDB and line by line alike),
landing the images in a warehouse, and their price."""

from __future__ import annotations

import base64
import struct
import zlib

import orjson
import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price
from openai.types import Completion, ImagesResponse

from batch_pipeline.cost import batch_price
from batch_pipeline.errors import SpecError
from batch_pipeline.harvest.images import land_images
from batch_pipeline.local_api.images import images_generations, png
from batch_pipeline.local_api.responders import completions
from batch_pipeline.provider.openai_images import images_in
from batch_pipeline.provider.openai_results import _parse_each_line, parse_lines
from batch_pipeline.spec import BatchSpec
from batch_pipeline.warehouse.storage import Warehouse


def read_png(data: bytes) -> tuple[int, int, int, bytes]:
    """Width, height, colour type and the decompressed scanlines, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and b"IEND" in chunks
    return width, height, colour, zlib.decompress(chunks[b"IDAT"])


@pytest.mark.parametrize("size, transparent", [("1024x1024", False), ("1536x1024", True)])
def test_the_local_api_answers_a_real_png_of_the_asked_size_in_openais_shape(size, transparent):
    body = {"model": "gpt-image-1-mini", "prompt": "A tent", "size": size, "quality": "low", "n": 2,
            "background": "transparent" if transparent else "opaque"}
    status, answer = images_generations(body)
    assert status == 200
    parsed = ImagesResponse.model_validate(answer)  # the SDK's own type, validated
    assert parsed.size == size and parsed.quality == "low" and parsed.output_format == "png"
    assert parsed.data is not None and len(parsed.data) == 2 and parsed.data[0].revised_prompt is None
    width, height = map(int, size.split("x"))
    for image in parsed.data:
        w, h, colour, rows = read_png(base64.b64decode(image.b64_json or ""))
        channels = 4 if transparent else 3
        assert (w, h, colour) == (width, height, 6 if transparent else 2)
        assert len(rows) == height * (1 + width * channels)
    assert parsed.data[0].b64_json != parsed.data[1].b64_json  # two images, two pictures
    assert parsed.usage is not None and parsed.usage.output_tokens == 2 * round(272 * width * height / 1024 ** 2)
    assert images_generations(body)[1]["data"] == answer["data"]  # same request, same images


@pytest.mark.parametrize("change, param", [({"n": 11}, "n"), ({"size": "999x999"}, "size"), ({"prompt": ""}, "prompt"),
                                          ({"output_format": "webp"}, "output_format"),
                                          ({"model": "gpt-4o-mini"}, "model")])
def test_an_image_request_the_endpoint_refuses_is_a_400_naming_the_parameter(change, param):
    status, answer = images_generations({"model": "gpt-image-1-mini", "prompt": "A tent", **change})
    assert status == 400 and answer["error"]["param"] == param


def test_the_png_is_the_same_for_the_same_seed_only():
    assert png(bytes(32), 64, 48) == png(bytes(32), 64, 48) != png(bytes(range(32)), 64, 48)


def image_line(custom_id: str, answer: dict) -> bytes:
    line = {"id": "batch_req_1", "custom_id": custom_id, "error": None,
            "response": {"status_code": 200, "request_id": "req_1", "body": answer}}
    return orjson.dumps(line) + b"\n"


def test_an_images_line_parses_to_a_summary_without_its_bytes_both_ways():
    _, answer = images_generations({"model": "gpt-image-1-mini", "prompt": "A tent", "quality": "low"})
    answer["data"][0]["revised_prompt"] = "A tent, revised"
    data = image_line("SKU-1", answer)
    fast, slow = parse_lines(data).to_pylist(), _parse_each_line(data).to_pylist()
    for row in (fast, slow):
        assert row[0]["status"] == "succeeded" and row[0]["embedding"] is None
        assert orjson.loads(row[0]["output"]) == {
            "images": 1, "revised_prompt": "A tent, revised", "size": "1024x1024", "quality": "low",
            "output_format": "png", "output_image_tokens": 272}
        assert (row[0]["input_tokens"], row[0]["output_tokens"]) == (2, 272)


def test_a_completion_line_parses_to_its_text_both_ways():
    status, answer = completions({"model": "gpt-3.5-turbo-instruct", "prompt": "Name a tent", "max_tokens": 20})
    assert status == 200 and Completion.model_validate(answer).choices[0].text
    data = image_line("c1", answer)
    for row in (parse_lines(data).to_pylist()[0], _parse_each_line(data).to_pylist()[0]):
        assert row["status"] == "succeeded" and row["output"] == answer["choices"][0]["text"]
        assert row["output_tokens"] == answer["usage"]["completion_tokens"]


def test_images_land_once_and_a_line_without_readable_images_is_invalid_output(tmp_path):
    _, answer = images_generations({"model": "gpt-image-1-mini", "prompt": "A tent", "n": 2})
    broken = {**answer, "data": [{"b64_json": "not base64!"}]}
    raw = tmp_path / "batch_1.output.jsonl"
    raw.write_bytes(image_line("SKU-1", answer) + image_line("SKU-2", broken))
    wh = Warehouse(tmp_path / "wh")
    folder = wh.root / "product_images" / "results" / "partition=2026-11-20" / "images"

    def land() -> list[dict]:
        return land_images(wh, folder, 2, images_in([raw]), parse_lines([raw]), "gpt-image-1-mini").to_pylist()

    rows = land()
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["SKU-1-1.png", "SKU-1-2.png"]
    assert orjson.loads(rows[0]["output"])["files"] == [
        f"product_images/results/partition=2026-11-20/images/{name}" for name in files]
    assert rows[0]["model"] == "gpt-image-1-mini" and rows[0]["status"] == "succeeded"
    assert rows[1]["status"] == "invalid_output" and "0 could be read" in rows[1]["error_message"]
    def stamps() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}

    before = stamps()
    assert land() == rows  # again over the same raw file: the same rows, and nothing rewritten
    assert stamps() == before

    # SKU-1 sent again after its prompt changed: its new images replace the old under the same names
    _, changed = images_generations({"model": "gpt-image-1-mini", "prompt": "A blue tent", "n": 2})
    raw.write_bytes(image_line("SKU-1", changed))
    land()
    assert sorted(p.name for p in folder.iterdir()) == files
    assert [(folder / name).read_bytes() for name in files] == [
        base64.b64decode(image["b64_json"]) for image in changed["data"]]


def test_output_image_tokens_pay_the_image_rate_as_genai_prices_does():
    price = batch_price("gpt-image-1.5")
    assert price is not None and price.output_image is not None
    cost = price.row_costs(pa.chunked_array([[120]]), pa.chunked_array([[None]], pa.int64()),
                           pa.chunked_array([[1300]]), pa.array([1000]))
    usage = Usage(input_tokens=120, output_tokens=1300, output_image_tokens=1000)
    expected = calc_price(usage, "gpt-image-1.5", provider_id="openai", price_context={"processing": "batch"})
    assert cost[0].as_py() == pytest.approx(float(expected.total_price))


@pytest.mark.parametrize("parameters, says", [({"n": 11}, "'n' must be an integer 1..10"),
                                              ({"output_format": "gif"}, "'output_format' must be one of"),
                                              ({"partial_images": 2}, "'partial_images'"),
                                              ({"prompt": "x"}, "may not set ['prompt']")])
def test_an_images_spec_that_cannot_land_files_is_refused(parameters, says):
    with pytest.raises(SpecError, match="spec 'shots'") as refused:
        BatchSpec(name="shots", model="gpt-image-1-mini", prompt="{name}", endpoint="/v1/images/generations",
                  parameters=parameters)
    assert says in str(refused.value)
