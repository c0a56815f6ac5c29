"""The images of an `/v1/images/generations` batch: each answered line's `data[].b64_json`, decoded.

Read a line at a time with orjson: an image line is megabytes of base64, so neither a whole file
nor a column of images is ever held (the results' own columns come from `openai_results`, which
leaves the bytes out).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson

from batch_pipeline.provider.contract import GeneratedImage
from batch_pipeline.spec import IMAGE_EXTENSIONS


def images_in(files: Sequence[bytes | Path]) -> Iterator[GeneratedImage]:
    """Every image of every 2xx line of `files` (bytes, or local copies), in file order; a line
    that is not an images answer, or an image that is not valid base64, yields nothing (its row
    then names no file and is marked by the harvest)."""
    for data in files:
        for raw in _lines(data):
            yield from _line_images(raw)


def _lines(data: bytes | Path) -> Iterable[bytes]:
    if isinstance(data, bytes):
        yield from data.removeprefix(codecs.BOM_UTF8).splitlines()
        return
    with open(data, "rb") as handle:
        for number, raw in enumerate(handle):
            yield raw.removeprefix(codecs.BOM_UTF8) if number == 0 else raw


def _line_images(raw: bytes) -> Iterator[GeneratedImage]:
    if not raw.strip():
        return
    try:
        line = orjson.loads(raw)
        response, custom_id = line.get("response") or {}, line.get("custom_id")
        body = response.get("body") or {}
        if not isinstance(custom_id, str) or not 200 <= (response.get("status_code") or 0) < 300:
            return
        extension = IMAGE_EXTENSIONS.get(body.get("output_format") or "png", "png")
        items = body.get("data") or []
    except (orjson.JSONDecodeError, AttributeError):
        return  # the results parser reports a malformed line with its number
    for position, item in enumerate(items):
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(encoded, str):
            continue
        try:
            yield GeneratedImage(custom_id, position, extension, base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
