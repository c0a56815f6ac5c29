"""Generated images, landed as files beside the partition's results before the Parquet names them.

Each image of an answered line is written to `results/partition=<key>/images/<custom_id>.<ext>`
(atomically, through the warehouse, so on object storage too). A rerun reads the same batch's raw
files, finds each image already there with the same bytes, and writes nothing; a request sent
again after a rebuild changed it gets its new image in place of the old. The row's `output`
(the provider's summary of its images) gains the files' paths, relative to the warehouse root;
an answer whose images could not all be read is `invalid_output`, naming how many.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from batch_pipeline.provider.contract import GeneratedImage
from batch_pipeline.warehouse import layout
from batch_pipeline.warehouse.storage import Warehouse


def land_images(wh: Warehouse, folder: UPath, per_request: int, images: Iterable[GeneratedImage],
                lines: pa.Table, model: str) -> pa.Table:
    """Write `images` into `folder` (each one not there already) and name them in the answered
    `lines` (`RESULT_ROWS`). An images answer names no model, so an answered line takes the
    request's `model` (the use case's): its cost is that model's."""
    landed: dict[str, list[tuple[int, str]]] = {}
    for image in images:
        path = folder / layout.image_file(image.custom_id, image.position, per_request, image.extension)
        if not _holds(path, image.data):
            wh.write_bytes(path, image.data)
        landed.setdefault(image.custom_id, []).append((image.position, wh.relative(path)))
    answered = pc.fill_null(pc.equal(lines["status"], "succeeded"), False)
    lines = lines.set_column(lines.schema.get_field_index("model"), "model",
                             pc.if_else(pc.and_(answered, pc.is_null(lines["model"])), model, lines["model"]))
    return _named(lines, {cid: [path for _, path in sorted(files)] for cid, files in landed.items()})


def _holds(path: UPath, data: bytes) -> bool:
    """Whether the file at `path` is exactly `data` (the size first: one metadata call when not)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _named(lines: pa.Table, landed: dict[str, list[str]]) -> pa.Table:
    """Each succeeded line's output with its files; a line with fewer files than images it
    reported, or with none, is `invalid_output`."""
    succeeded = pc.fill_null(pc.equal(lines["status"], "succeeded"), False)
    if not pc.any(succeeded).as_py():
        return lines
    ids, outputs = lines["custom_id"].to_pylist(), lines["output"].to_pylist()
    status, codes, messages = (lines[name].to_pylist() for name in ("status", "error_code", "error_message"))
    for i in pc.indices_nonzero(succeeded).to_pylist():
        summary = _summary(outputs[i])
        files = landed.get(ids[i], [])
        reported = summary.get("images") or 0
        if not files or len(files) < reported:
            status[i], codes[i] = "invalid_output", "invalid_output"
            messages[i] = f"the answer reported {reported} images; {len(files)} could be read as base64 image data"
        outputs[i] = orjson.dumps({**summary, "files": files}).decode()
    for name, values in (("status", status), ("error_code", codes), ("error_message", messages), ("output", outputs)):
        lines = lines.set_column(lines.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return lines


def _summary(output: str | None) -> dict:
    """The provider's summary of a line's images (`openai_results.image_summary`), or none."""
    try:
        summary = orjson.loads(output) if output else {}
    except orjson.JSONDecodeError:
        return {}
    return summary if isinstance(summary, dict) else {}


def image_fields() -> list[pa.Field]:
    """The typed columns of an images answer: its files (relative to the warehouse root), the
    prompt as the model revised it (where it does), its size and quality, and its output image
    tokens (priced at the model's image rate)."""
    return [pa.field("image_files", pa.list_(pa.string())), pa.field("revised_prompt", pa.string()),
            pa.field("image_size", pa.string()), pa.field("image_quality", pa.string()),
            pa.field("output_image_tokens", pa.int64())]


def parse_images_answer(text: str | None) -> tuple[dict | None, str | None]:
    """(column values, None) for a landed images answer (`land_images`' output), or (None, reason)."""
    summary = _summary(text)
    if not summary.get("files"):
        return None, "the answer names no image file"
    tokens = summary.get("output_image_tokens")
    return {"image_files": summary["files"], "revised_prompt": summary.get("revised_prompt"),
            "image_size": summary.get("size"), "image_quality": summary.get("quality"),
            "output_image_tokens": tokens if isinstance(tokens, int) else None}, None
