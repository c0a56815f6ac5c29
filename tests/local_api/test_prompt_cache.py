"""Prompt caching as OpenAI reports it: a prefix of 1,024 tokens or more that an earlier line of
the batch sent is cached, in 128-token increments, the same in every run; shorter prompts never."""

from __future__ import annotations

import time
from pathlib import Path

import openai
from openai.types import Batch

from batch_pipeline.local_api import embedded_client
from batch_pipeline.local_api.lifecycle import Lifecycle
from batch_pipeline.local_api.store import Store
from tests.local_api.conftest import MakeClient
from tests.local_api.support import FAST, TERMINAL, chat_line, read_jsonl, submit, wait_terminal

GUIDE = "Follow the style guide: plain words, short sentences, no jargon. " * 80  # ~1,300 tokens


def guided(custom_id: str, question: str, guide: str = GUIDE) -> dict:
    line = chat_line(custom_id, question)
    line["body"]["messages"].insert(0, {"role": "system", "content": guide})
    return line


def cached_by_line(client: openai.OpenAI, lines: list[dict], endpoint: str = "/v1/chat/completions",
                   batch_id: str | None = None) -> tuple[dict[str, int], Batch]:
    """Each answer's cached prompt tokens by custom_id, and the finished batch."""
    batch = wait_terminal(client, batch_id or submit(client, lines, endpoint=endpoint))
    details = "prompt_tokens_details" if endpoint == "/v1/chat/completions" else "input_tokens_details"
    return {a["custom_id"]: a["response"]["body"]["usage"][details]["cached_tokens"]
            for a in read_jsonl(client, batch.output_file_id)}, batch


def test_a_shared_long_instruction_is_cached_after_the_first_line(make_client: MakeClient) -> None:
    client = make_client(FAST)
    lines = [guided(f"q{i}", f"Question {i}: how do I take metformin?") for i in range(4)]
    lines.append(guided("other", "Anything", guide="A different guide entirely. " * 200))
    cached, batch = cached_by_line(client, lines)
    assert cached["q0"] == 0 and cached["other"] == 0  # first to send its prefix
    shared = {cached[f"q{i}"] for i in range(1, 4)}
    assert len(shared) == 1 and (hit := shared.pop()) >= 1024 and (hit - 1024) % 128 == 0
    assert batch.usage.input_tokens_details.cached_tokens == 3 * hit  # the batch's usage counts them
    assert hit <= min(batch.usage.input_tokens // 5, 1400)


def test_short_prompts_and_other_batches_are_not_cached(make_client: MakeClient) -> None:
    client = make_client(FAST)
    short, _ = cached_by_line(client, [chat_line(f"s{i}", "Same short prompt") for i in range(3)])
    assert set(short.values()) == {0}  # under 1,024 tokens: never cached
    alone, _ = cached_by_line(client, [guided("q0", "Question")])
    assert alone == {"q0": 0}  # the cache is the batch's own: another batch's prefixes do not count


def test_the_responses_endpoint_reports_cached_input_tokens(make_client: MakeClient) -> None:
    client = make_client(FAST)
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
              "body": {"model": "gpt-4o-mini", "instructions": GUIDE, "input": f"Question {i}"}} for i in range(2)]
    cached, _ = cached_by_line(client, lines, endpoint="/v1/responses")
    assert cached["r0"] == 0 and cached["r1"] >= 1024


def test_a_batch_resumed_elsewhere_reports_the_same_cached_tokens(tmp_path: Path) -> None:
    """Lines run a few at a time by different processes (here: a fresh lifecycle for each step,
    as after a restart) count the same cached tokens as one uninterrupted run."""
    lines = [guided(f"q{i}", f"Question {i}") for i in range(6)]
    whole, _ = cached_by_line(embedded_client(tmp_path / "whole", settings=FAST), lines)
    slow = FAST.model_copy(update={"pace_seconds": 1.0})  # lines become due over a second
    batch_id = submit(embedded_client(tmp_path / "steps", settings=slow), lines)
    store, progress = Store(tmp_path / "steps"), set()
    while store.get_batch(batch_id).status not in TERMINAL:
        Lifecycle(store, slow).advance([batch_id])
        progress.add(store.get_batch(batch_id).lines_done)
        time.sleep(0.1)
    assert len(progress - {0, 6}) >= 1, "some lines ran in one lifecycle, the rest in others"
    assert cached_by_line(embedded_client(tmp_path / "steps", settings=slow), lines, batch_id=batch_id)[0] == whole
