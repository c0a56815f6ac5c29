"""OpenAI's prompt caching, simulated deterministically by the local Batch API.

OpenAI caches prompt prefixes of 1,024 tokens or more and reports a hit in 128-token increments
as `usage.prompt_tokens_details.cached_tokens` (Responses: `usage.input_tokens_details`). Here a
request line's prefix is cached when an earlier line of the same batch sent the same prefix: with
a long shared instruction, the batch's first line pays it in full and the lines after it read it
from the cache. Lengths are the local API's own token estimate (four characters a token), and the
answer depends only on the input file and the line's place in it, so it is the same in every
process and after any restart.
"""

from __future__ import annotations

import hashlib
from typing import Any

from batch_pipeline.local_api.responders import EncodedReply, Reply

MIN_CACHED_TOKENS = 1024
CACHE_INCREMENT_TOKENS = 128
CHARS_PER_TOKEN = 4
MIN_CACHED_CHARS = MIN_CACHED_TOKENS * CHARS_PER_TOKEN
MAX_PREFIXES = 100_000  # remembered per batch (~10 MB); later prefixes are looked up, not kept
_ZERO = b'"cached_tokens":0'


class PromptCache:
    """The prompt prefixes one batch's lines have sent so far."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.lines = 0  # lines remembered: the next line's number (from 0)

    def send(self, text: str | None, prompt_tokens: int) -> int:
        """Remember the prefixes of one line's prompt `text`; the tokens an earlier line had cached
        (0: none, or a prompt shorter than 1,024 tokens)."""
        self.lines += 1
        if not text:
            return 0
        digest = hashlib.blake2b(digest_size=16)
        cached, hit, start = 0, True, 0
        end = MIN_CACHED_CHARS
        while end <= len(text) and end // CHARS_PER_TOKEN <= prompt_tokens:
            digest.update(text[start:end].encode())
            key = digest.digest()  # of text[:end]; the digest goes on from there
            hit = hit and key in self.seen
            if hit:
                cached = end // CHARS_PER_TOKEN
            elif len(self.seen) < MAX_PREFIXES:
                self.seen.add(key)
            start, end = end, end + CACHE_INCREMENT_TOKENS * CHARS_PER_TOKEN
        return cached


def with_cached_tokens(reply: Reply | EncodedReply, cached: int) -> Reply | EncodedReply:
    """`reply` reporting `cached` prompt tokens as cached (a success only; others are unchanged)."""
    if not cached or not 200 <= reply[0] < 300:
        return reply
    if len(reply) == 4:  # serialized: its usage is the last "cached_tokens" (the answer's is escaped)
        status, payload, prompt, completion = reply
        at = payload.rfind(_ZERO)
        if at < 0:
            return reply
        return status, payload[:at] + b'"cached_tokens":%d' % cached + payload[at + len(_ZERO):], prompt, completion
    status, body = reply
    usage: dict[str, Any] = dict(body.get("usage") or {})
    key = "prompt_tokens_details" if "prompt_tokens_details" in usage else "input_tokens_details"
    usage[key] = {**(usage.get(key) or {}), "cached_tokens": cached}
    return status, {**body, "usage": usage}
