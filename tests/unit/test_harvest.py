import orjson
import pyarrow as pa

from batch_pipeline.cost import BatchPrice
from batch_pipeline.harvest.lines import (
    BatchOutcome,
    assemble,
    batch_lines,
    counts_by_status,
    retryable,
)
from batch_pipeline.provider.openai_results import parse_lines, parse_results


def ok(cid: str, text: str = "hi") -> dict:
    return {"id": f"batch_req_{cid}", "custom_id": cid, "error": None, "response": {
        "status_code": 200, "request_id": "req_1", "body": {
            "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}}


def http_error(cid: str, status: int, code: str | None) -> dict:
    return {"id": "x", "custom_id": cid, "error": None, "response": {"status_code": status, "request_id": "r", "body": {
        "error": {"message": f"failed {status}", "type": "server_error", "param": None, "code": code}}}}


def never_ran(cid: str, code: str) -> dict:
    return {"id": "x", "custom_id": cid, "response": None, "error": {"code": code, "message": f"{code} happened"}}


def jsonl(*lines: dict) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def index(ids: list[str], shards: list[int | None], statuses: list[str] | None = None) -> pa.Table:
    statuses = statuses or ["pending" if s is not None else "rejected" for s in shards]
    return pa.table({
        "id": ids, "custom_id": ids, "shard": pa.array(shards, pa.int32()), "status": statuses,
        "error_code": pa.array([None if s == "pending" else "missing_value" for s in statuses], pa.string()),
        "error_message": pa.array([None if s == "pending" else "column 'name' is empty" for s in statuses],
                                  pa.string()),
    })


def test_parse_follows_the_robust_rule():
    parsed = parse_lines(jsonl(ok("a"), http_error("b", 429, "rate_limit_exceeded"), http_error("c", 500, None),
                               never_ran("d", "batch_expired"), never_ran("e", "batch_cancelled"))).to_pylist()
    assert [(p["custom_id"], p["status"], p["error_code"]) for p in parsed] == [
        ("a", "succeeded", None), ("b", "failed", "rate_limit_exceeded"), ("c", "failed", "server_error"),
        ("d", "expired", "batch_expired"), ("e", "cancelled", "batch_cancelled")]
    assert parsed[0]["output"] == "hi" and parsed[0]["input_tokens"] == 10 and parsed[0]["output_tokens"] == 5


def test_every_row_exactly_once_in_source_order_whatever_the_file_order():
    idx = index(["r1", "r2", "r3", "r4", "r5"], [0, 0, None, 1, 1])
    lines = pa.concat_tables([
        batch_lines(BatchOutcome("batch_a", "completed"), 1, ["r1", "r2"],
                    parse_results([jsonl(ok("r2", "two"), ok("r1", "one"), ok("unknown"))])),
        batch_lines(BatchOutcome("batch_b", "expired"), 1, ["r4", "r5"],
                    parse_results([jsonl(never_ran("r4", "batch_expired"))])),
    ])
    result = assemble(idx, ["id"], lines, {"gpt-4o-mini": BatchPrice.per_million(1, 2)}).to_pylist()
    assert [r["custom_id"] for r in result] == ["r1", "r2", "r3", "r4", "r5"]
    assert [r["status"] for r in result] == ["succeeded", "succeeded", "rejected", "expired", "expired"]
    assert [r["output"] for r in result][:2] == ["one", "two"]
    assert result[2]["error_message"] == "column 'name' is empty" and result[2]["attempts"] == 0
    assert result[4]["error_code"] == "batch_expired" and result[4]["batch_id"] == "batch_b"
    assert [r["attempts"] for r in result] == [1, 1, 0, 1, 1]
    assert result[0]["cost_usd"] == 10 * 1e-6 + 5 * 2e-6
    assert result[3]["cost_usd"] is None


def test_failed_batch_and_missing_lines_still_give_every_row_a_status():
    idx = index(["a", "b", "c"], [0, 1, 1])
    lines = pa.concat_tables([
        batch_lines(BatchOutcome("batch_0", "failed", "token_limit_exceeded", "Enqueued token limit reached"), 1,
                    ["a"], parse_results([])),
        batch_lines(BatchOutcome("batch_1", "completed"), 1, ["b", "c"], parse_results([jsonl(ok("b"))])),
    ])
    result = assemble(idx, ["id"], lines, {}).to_pylist()
    assert [(r["status"], r["error_code"]) for r in result] == [
        ("failed", "token_limit_exceeded"), ("succeeded", None), ("failed", "missing_result")]
    assert retryable(assemble(idx, ["id"], lines, {}), max_attempts=3) == ["a", "c"]
    assert retryable(assemble(idx, ["id"], lines, {}), max_attempts=1) == []


def test_a_success_wins_over_a_failure_and_the_latest_attempt_over_older_ones():
    idx = index(["a", "b"], [0, 0])
    lines = pa.concat_tables([
        batch_lines(BatchOutcome("first", "completed"), 1, ["a", "b"],
                    parse_results([jsonl(http_error("a", 500, None), http_error("b", 429, "rate_limit_exceeded"))])),
        batch_lines(BatchOutcome("second", "completed"), 2, ["a", "b"],
                    parse_results([jsonl(ok("a"), never_ran("b", "batch_expired"))])),
    ])
    a, b = assemble(idx, ["id"], lines, {}).to_pylist()
    assert (a["status"], a["attempts"], a["batch_id"]) == ("succeeded", 2, "second")
    assert (b["status"], b["error_code"], b["attempts"], b["batch_id"]) == ("expired", "batch_expired", 2, "second")


def test_counts_cover_every_status():
    idx = index(["a", "b"], [0, None])
    lines = batch_lines(BatchOutcome("b", "completed"), 1, ["a"], parse_results([jsonl(ok("a"))]))
    table = assemble(idx, ["id"], lines, {})
    assert counts_by_status(table) == {"succeeded": 1, "failed": 0, "invalid_output": 0, "rejected": 1,
                                       "expired": 0, "cancelled": 0}


def chat(cid: str, **message) -> dict:
    line = ok(cid)
    line["response"]["body"]["choices"][0]["message"] = {"role": "assistant", **message}
    return line


ODD_LINES = [
    ok("a", "plain answer"),
    chat("b", content=None, refusal="I can't help with that."),
    chat("c", content="ünïcode 💊 and \"quotes\" and \\n"),
    {"custom_id": "d", "response": {"status_code": 200, "request_id": "r", "body": {"model": "m", "choices": []}},
     "error": None},
    http_error("e", 429, "rate_limit_exceeded"),
    http_error("f", 500, None),
    {"custom_id": "g", "response": {"status_code": 400, "body": {"error": {"message": "", "type": "", "code": ""}}},
     "error": None},
    {"custom_id": "h", "response": {"status_code": 0, "request_id": "", "body": {}}, "error": None},
    never_ran("i", "batch_expired"),
    never_ran("j", "batch_cancelled"),
    {"custom_id": "k", "response": None, "error": {"code": "server_error", "message": "boom"}},
    {"custom_id": "l", "response": {}, "error": {}},
    {"custom_id": "m", "response": {"status_code": 200, "body": {"model": "m", "choices": [{"message": {}}],
                                                                "usage": {"input_tokens": 3, "output_tokens": 4}}},
     "error": {"code": None, "message": None}},
    {"custom_id": "n", "response": {"status_code": 200, "body": {"model": "m", "choices": [
        {"message": {"content": "first"}}, {"message": {"content": "second"}}]}}, "error": None, "extra": [1, 2]},
]


def test_odd_lines_follow_the_robust_rule():
    rows = {r["custom_id"]: r for r in parse_lines(jsonl(*ODD_LINES)).to_pylist()}
    summary = {cid: (r["status"], r["error_code"], r["output"]) for cid, r in rows.items()}
    assert summary == {
        "a": ("succeeded", None, "plain answer"),
        "b": ("invalid_output", "refusal", None),
        "c": ("succeeded", None, 'ünïcode 💊 and "quotes" and \\n'),
        "d": ("succeeded", None, None),
        "e": ("failed", "rate_limit_exceeded", None),
        "f": ("failed", "server_error", None),
        "g": ("failed", "http_400", None),
        "h": ("failed", "http_0", None),
        "i": ("expired", "batch_expired", None),
        "j": ("cancelled", "batch_cancelled", None),
        "k": ("failed", "server_error", None),
        "l": ("failed", "http_0", None),
        "m": ("succeeded", None, None),
        "n": ("succeeded", None, "first"),
    }
    assert rows["b"]["error_message"] == "I can't help with that."
    assert rows["h"]["error_message"] == "request failed with HTTP 0"
    assert (rows["m"]["input_tokens"], rows["m"]["output_tokens"]) == (3, 4)


def response(cid: str, *items: dict) -> dict:
    return {"custom_id": cid, "error": None, "response": {"status_code": 200, "body": {
        "object": "response", "model": "gpt-4o-mini", "output": list(items),
        "usage": {"input_tokens": 7, "output_tokens": 2}}}}


def embedding(cid: str, vector: list[float]) -> dict:
    return {"custom_id": cid, "error": None, "response": {"status_code": 200, "body": {
        "object": "list", "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}], "usage": {"prompt_tokens": 3}}}}


SHAPES = [
    *ODD_LINES,
    response("r1", {"type": "reasoning", "summary": []},
             {"type": "message", "content": [{"type": "output_text", "text": "a", "annotations": []},
                                             {"type": "output_text", "text": "b"}]}),
    response("r2", {"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}),
    response("r3"),
    embedding("v1", [0.25, -0.5, 1.0]),
]


def test_column_wise_parse_equals_the_line_by_line_rules(monkeypatch):
    from batch_pipeline.provider import openai_results as harvest

    expected = harvest._parse_each_line(jsonl(*SHAPES))
    monkeypatch.setattr(harvest, "_parse_each_line", lambda data: (_ for _ in ()).throw(AssertionError("fallback")))
    assert parse_lines(jsonl(*SHAPES)).to_pylist() == expected.to_pylist()
    rows = {r["custom_id"]: r for r in expected.to_pylist()}
    assert (rows["r1"]["output"], rows["r2"]["status"], rows["r3"]["output"]) == ("ab", "invalid_output", None)
    assert rows["v1"]["embedding"] == [0.25, -0.5, 1.0] and rows["v1"]["input_tokens"] == 3


def test_a_line_of_another_shape_does_not_stop_the_file():
    odd = {"custom_id": "z", "response": {"status_code": 200, "body": "not an object"}, "error": None}
    rows = {r["custom_id"]: r for r in parse_lines(jsonl(ok("a"), odd)).to_pylist()}
    assert rows["a"]["status"] == "succeeded"
    assert (rows["z"]["status"], rows["z"]["error_code"]) == ("failed", "malformed_line")
    assert rows["z"]["error_message"].startswith("line 2 of the provider's file has an unexpected shape")


def test_values_of_the_wrong_type_fail_their_line_only():
    lines = [{"custom_id": "t", "response": {"status_code": 200, "body": {"model": "m", "choices": [
        {"message": {"content": ["a", "list"]}}], "usage": {"prompt_tokens": "many"}}}, "error": None},
             {"custom_id": 5, "response": "nope", "error": None}, ok("a")]
    rows = parse_lines(jsonl(*lines)).to_pylist()
    assert [(r["custom_id"], r["status"], r["error_code"]) for r in rows] == [
        ("t", "failed", "malformed_line"), (None, "failed", "malformed_line"), ("a", "succeeded", None)]


def test_local_files_parse_as_their_bytes_do(tmp_path):
    good, odd = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    good.write_bytes(jsonl(*SHAPES))
    odd.write_bytes(jsonl(http_error("x", 500, None),
                          {"custom_id": "y", "response": {"status_code": 200, "body": "text"}, "error": None}))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert parse_lines([good, tmp_path / "empty.jsonl"]).to_pylist() == parse_lines(good.read_bytes()).to_pylist()
    both = parse_lines([good, odd]).to_pylist()  # an odd line sends both files down the line-by-line path
    assert both == parse_lines(good.read_bytes()).to_pylist() + parse_lines(odd.read_bytes()).to_pylist()
    assert both[-1]["error_code"] == "malformed_line"
