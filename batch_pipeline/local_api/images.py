"""A deterministic stand-in for OpenAI's `/v1/images/generations`: small real PNGs, OpenAI's shape.

Same prompt, model, size and quality: the same image, a grid of coloured blocks whose colours
come from a hash of them, at the size asked for. The PNG is written with zlib and struct: Pillow
is not a dependency, and a PNG of flat blocks needs only its three chunks. The answer has the
shape of `openai.types.ImagesResponse` (`data[].b64_json`, `size`, `quality`, `output_format`,
`background`, `usage` with image tokens); a GPT image model returns no `revised_prompt`, as on
OpenAI, and a DALL-E model (served only when `--served-model` names it) does.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import zlib
from typing import Any

from batch_pipeline.local_api.errors import error_body

Reply = tuple[int, dict[str, Any]]

STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536")
QUALITIES = ("low", "medium", "high", "xhigh", "max", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")
MAX_PROMPT_CHARS = 32_000
IMAGE_MODELS = ("gpt-image-", "chatgpt-image-", "dall-e-")  # prefixes of OpenAI's image model ids
# Output tokens of one 1024x1024 image by quality, as OpenAI documents them for GPT image models;
# another size costs in proportion to its area.
IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160, "xhigh": 6240, "max": 8320}
_GRID = 8  # blocks per side


def images_generations(body: dict[str, Any]) -> Reply:
    """OpenAI's images response for `body`, or the 400 the endpoint would answer it with."""
    error = _invalid_image_request(body)
    if error is not None:
        return error
    prompt, model = body["prompt"], str(body.get("model"))
    size = body.get("size") or "auto"
    width, height = (1024, 1024) if size == "auto" else map(int, size.split("x"))
    quality = body.get("quality") or "auto"
    quality = "medium" if quality == "auto" else quality
    transparent = body.get("background") == "transparent"
    n = body.get("n") or 1
    data = []
    for index in range(n):
        seed = hashlib.blake2b(f"{model}|{prompt}|{width}x{height}|{quality}|{index}".encode(), digest_size=32)
        item: dict[str, Any] = {"b64_json": base64.b64encode(png(seed.digest(), width, height, transparent)).decode()}
        if model.startswith("dall-e"):
            item["revised_prompt"] = f"A clear product photograph: {prompt}"
        data.append(item)
    text_tokens = (len(prompt) + 3) // 4  # about four characters a token, as the other responders count
    image_tokens = n * round(IMAGE_TOKENS[quality] * width * height / (1024 * 1024))
    return 200, {
        "created": int(time.time()), "background": "transparent" if transparent else "opaque", "data": data,
        "output_format": "png", "quality": quality, "size": f"{width}x{height}",
        "usage": {"input_tokens": text_tokens, "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
                  "output_tokens": image_tokens, "total_tokens": text_tokens + image_tokens,
                  "output_tokens_details": {"image_tokens": image_tokens, "text_tokens": 0}},
    }


def _invalid_image_request(body: dict[str, Any]) -> Reply | None:
    if not str(body.get("model")).startswith(IMAGE_MODELS):
        return _invalid(f"Invalid value for 'model': '{body.get('model')}' is not an image generation model.",
                        "model", "invalid_value")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _invalid("Invalid 'prompt': expected a non-empty string.", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        return _invalid(f"Invalid 'prompt': string too long. Expected a string with maximum length "
                        f"{MAX_PROMPT_CHARS}, but got a string with length {len(prompt)} instead.", "prompt",
                        "string_above_max_length")
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10):
        return _invalid(f"Invalid 'n': expected an integer between 1 and 10, but got {n!r}.", "n")
    for name, allowed in (("size", (*STANDARD_SIZES, "auto")), ("quality", QUALITIES), ("background", BACKGROUNDS)):
        value = body.get(name)
        if value is not None and value not in allowed:
            return _invalid(f"Invalid value for '{name}': {value!r}. Supported values are: "
                            f"{', '.join(repr(a) for a in allowed)}.", name, "invalid_value")
    if body.get("output_format") not in (None, "png"):
        return _invalid("The local Batch API writes PNG images only; leave 'output_format' unset or 'png'.",
                        "output_format", "unsupported_value")
    if body.get("response_format") == "url":
        return _invalid("'response_format' 'url' is not supported for GPT image models.", "response_format",
                        "unsupported_value")
    return None


def _invalid(message: str, param: str, code: str | None = None) -> Reply:
    return 400, error_body(message, "invalid_request_error", param, code)


def png(seed: bytes, width: int, height: int, transparent: bool = False) -> bytes:
    """A `width` x `height` PNG of an 8 x 8 grid of flat blocks coloured from `seed` (32 bytes):
    8-bit RGB, or RGBA whose blocks are half see-through when `transparent`."""
    alpha = b"\x80" if transparent else b""
    rows = []
    for block_row in range(_GRID):
        pixels = [(_colour(seed, block_row * _GRID + column) + alpha)
                  * ((column + 1) * width // _GRID - column * width // _GRID) for column in range(_GRID)]
        scanline = b"\x00" + b"".join(pixels)  # filter type 0 (None)
        rows.append(scanline * ((block_row + 1) * height // _GRID - block_row * height // _GRID))
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if transparent else 2, 0, 0, 0)
    return b"".join((b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(b"".join(rows), 6)), _chunk(b"IEND", b"")))


def _colour(seed: bytes, block: int) -> bytes:
    """Block `block`'s RGB from the seed: its byte picks a shade of the seed's base colour."""
    shade = seed[block % 32] / 255
    return bytes(int(base * (0.35 + 0.65 * shade)) for base in seed[block % 29:block % 29 + 3])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
