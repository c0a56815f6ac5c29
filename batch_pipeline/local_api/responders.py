"""Deterministic stand-ins for OpenAI's synchronous endpoints.

Same request body, same answer: the text is built from the key words of the prompt with
templates picked by a hash of the body, so results are plausible to read, stable across
runs and cheap enough for 50,000-line batches. Tokens are estimated at about four
characters per token (no tokenizer download, nothing from the network).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
import time
import typing
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from batch_pipeline.local_api.errors import error_body
from batch_pipeline.local_api.images import images_generations
from batch_pipeline.local_api.structured import instance_for, prompt_schema

Reply = tuple[int, dict[str, Any]]
# A successful reply already serialized: status, the body's JSON (exactly ``orjson.dumps`` of the
# dict reply), prompt tokens and completion tokens (for the batch's usage).
EncodedReply = tuple[int, bytes, int, int]

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")
_LOWER_WORD = re.compile(r"[a-z][a-z'-]{3,}")  # _WORD on lowercased ASCII text
_STOP = frozenset(
    "about above after again also among because been before being below between both could does doing "
    "during each either every from have having here into itself just like more most much must only other "
    "over please same should some such than that their them then there these they this those through under "
    "until very were what when where which while will with within without would your yours write short "
    "explain describe give list using make sure need want tell answer question following based provide".split()
)
# Sentences about keywords A, B and C. None starts with a keyword, so no word needs capitalizing.
_SENTENCES = (
    "The main point to keep in mind is {A}.",
    "In short, {A} is closely tied to {B}.",
    "When {A} comes up, consider {B} and {C} as well.",
    "A practical note: {B} matters most where {A} is involved.",
    "Overall, the answer depends on {A}, {B} and {C}.",
    "It helps to look at {C} first, then at {A}.",
    "Each of these deserves a careful, plain-language explanation, {A} above all.",
    "Most questions about {A} come back to {C}.",
)
_INTROS = ("", "Here is a short overview of {0}.", "Here is a short overview of {0} and {1}.",
           "Here is a short overview of {0}, {1} and {2}.")
_VARIANTS = 256  # paragraph shapes per keyword count, picked by the low byte of the seed
# (keyword count << 8 | variant) -> format string over the keywords, built on first use: one
# ``str.format`` per answer instead of a dozen small string operations.
_PARAGRAPHS: dict[int, str] = {}
_DEFAULT_WORDS = ["the request", "the details", "the context"]
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072, "text-embedding-3-small": 1536, "text-embedding-ada-002": 1536}


def estimate_tokens(text: str) -> int:
    """About four characters per token, at least one for non-empty text."""
    return (len(text) + 3) // 4


def _text_of(content: Any) -> str:
    """Text of a message content: a string or a list of parts (``text`` / ``input_text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _seed(body: dict[str, Any]) -> int:
    """64 bits from two C-level checksums of the body's JSON (crc32 low, adler32 high).

    Same body (same keys in the same order), same seed. Nothing here needs a cryptographic
    hash: the seed only picks templates and ids, and this costs a fraction of blake2b over
    key-sorted JSON, which matters at 50,000 lines per batch. The low bits, which pick the
    templates, come from crc32 because adler32 barely changes between similar bodies.
    """
    data = orjson.dumps(body)
    return zlib.adler32(data) << 32 | zlib.crc32(data)


def keywords(text: str, limit: int = 6) -> list[str]:
    """Distinct content words of ``text`` in order of appearance."""
    found: list[str] = []
    if text.isascii():
        # Lowercasing ASCII maps letters to letters and nothing else, so the matches of the
        # lowered text are the lowered matches: one ``lower`` instead of one per word.
        for word in _LOWER_WORD.findall(text.lower()):
            if word not in _STOP and word not in found:
                found.append(word)
                if len(found) == limit:
                    break
        return found
    for word in _WORD.findall(text):
        lowered = word.lower()
        if lowered not in _STOP and lowered not in found:
            found.append(lowered)
            if len(found) == limit:
                break
    return found


def _paragraph(size: int, variant: int) -> str:
    """Format string of paragraph ``variant`` over ``size`` keywords ({0}.. index the keywords)."""
    mixed = (variant + 1) * 0x9E3779B97F4A7C15 % 2**64  # spread the variant's 8 bits over 64
    start = (mixed >> 48) % size
    ring = [f"{{{(start + j) % size}}}" for j in range(6)]
    sentences = [_SENTENCES[(mixed >> (8 + 3 * i)) & 7].format(A=ring[i], B=ring[i + 1], C=ring[i + 2])
                 for i in range(2 + (mixed >> 40) % 3)]
    return " ".join([_INTROS[min(size, 3)], *sentences])


def compose(words: list[str], seed: int) -> str:
    """A short paragraph echoing ``words``; the seed picks the sentences, their order and words."""
    pool = words or _DEFAULT_WORDS
    key = len(pool) << 8 | seed % _VARIANTS
    template = _PARAGRAPHS.get(key)
    if template is None:
        template = _PARAGRAPHS[key] = _paragraph(len(pool), seed % _VARIANTS)
    return template.format(*pool)


def _cap(text: str, limit: int | None) -> tuple[str, int, bool]:
    """Cut ``text`` to ``limit`` tokens; returns text, its tokens and whether it was cut."""
    tokens = estimate_tokens(text)
    if limit is None or tokens <= limit:
        return text, tokens, False
    return text[: limit * 4], limit, True


def _invalid(message: str, param: str | None, code: str | None = None) -> Reply:
    return 400, error_body(message, "invalid_request_error", param, code)


def _positive_int(body: dict[str, Any], *names: str) -> tuple[int | None, Reply | None]:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return None, _invalid(f"Invalid '{name}': expected a positive integer, but got {value!r}.", name)
        return value, None
    return None, None


def _answer(words: list[str], seed: int, schema: dict[str, Any] | None) -> str:
    if schema is None:
        return compose(words, seed)
    return orjson.dumps(instance_for(schema, words or _DEFAULT_WORDS, seed)).decode()


# One chat answer before serialization: seed, [(content, cut)] per choice, prompt and completion tokens.
_ChatAnswer = tuple[int, list[tuple[str, bool]], int, int]


def _chat_answer(body: dict[str, Any]) -> Reply | _ChatAnswer:
    """The chat answer for ``body``, or an error reply (a 2-tuple) when the body is invalid."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _invalid("Invalid 'messages': expected a non-empty array.", "messages")
    n = body.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        return _invalid(f"Invalid 'n': expected an integer between 1 and 128, but got {n!r}.", "n")
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if cap is not None and (type(cap) is not int or cap < 1):  # fast accept; the general check below
        cap, error = _positive_int(body, "max_completion_tokens", "max_tokens")
        if error:
            return error
    schema = None
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        response_format = {}
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            return _invalid("Missing required parameter: 'response_format.json_schema.schema'.",
                            "response_format.json_schema.schema", "missing_required_parameter")
    prompt_tokens = 3
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            return _invalid("Invalid 'messages': each message must be an object.", "messages")
        content = message.get("content")
        text = content if type(content) is str else _text_of(content)
        prompt_tokens += 4 + (len(text) + 3) // 4  # estimate_tokens, inlined
        if message.get("role") == "user":
            last_user = text
    if kind == "json_object":
        schema = prompt_schema("\n".join(_text_of(m.get("content")) for m in messages))
    words = keywords(last_user or " ".join(_text_of(m.get("content")) for m in messages))
    seed = _seed(body)
    if n == 1 and schema is None:  # the common shape, with _answer and _cap inlined
        content = compose(words, seed)
        tokens = (len(content) + 3) // 4
        if cap is None or tokens <= cap:
            return seed, [(content, False)], prompt_tokens, tokens
        return seed, [(content[: cap * 4], True)], prompt_tokens, cap
    answers = []
    completion_tokens = 0
    for index in range(n):
        content, tokens, cut = _cap(_answer(words, seed + index, schema), cap)
        completion_tokens += tokens
        answers.append((content, cut))
    return seed, answers, prompt_tokens, completion_tokens


def chat_completions(body: dict[str, Any]) -> Reply:
    answer = _chat_answer(body)
    if len(answer) == 2:
        return answer
    seed, answers, prompt_tokens, completion_tokens = answer
    choices: list[dict[str, Any]] = [{
        "index": index,
        "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": "length" if cut else "stop",
    } for index, (content, cut) in enumerate(answers)]
    return 200, {
        "id": f"chatcmpl-{seed:016x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "usage": _chat_usage(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": None,
    }


# ``orjson.dumps`` of the dict ``chat_completions`` builds, as byte templates (compact JSON, keys
# in insertion order). Keep the two in step: ``benchmarks/bench_local_api.py`` checks they agree.
_CHAT_HEAD = b'{"id":"chatcmpl-%016x","object":"chat.completion","created":%d,"model":%s,"choices":['
_CHAT_CHOICE = (b'{"index":%d,"message":{"role":"assistant","content":%s,"refusal":null,"annotations":[]},'
                b'"logprobs":null,"finish_reason":"%s"}')
_CHAT_TAIL = (b'],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
              b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
              b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
              b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
              b'"service_tier":"default","system_fingerprint":null}')
_CHAT_ONE = _CHAT_HEAD + _CHAT_CHOICE.replace(b'{"index":%d', b'{"index":0', 1) + _CHAT_TAIL  # n == 1
_FINISH = {False: b"stop", True: b"length"}


def chat_completions_encoded(body: dict[str, Any]) -> Reply | EncodedReply:
    """``chat_completions`` with a successful body already serialized (same bytes, less work)."""
    answer = _chat_answer(body)
    if len(answer) == 2:
        return answer
    seed, answers, prompt_tokens, completion_tokens = answer
    model = orjson.dumps(body.get("model"))
    if len(answers) == 1:
        content, cut = answers[0]
        encoded = _CHAT_ONE % (seed, int(time.time()), model, orjson.dumps(content), _FINISH[cut],
                               prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)
    else:
        encoded = b"".join((
            _CHAT_HEAD % (seed, int(time.time()), model),
            b",".join(_CHAT_CHOICE % (index, orjson.dumps(content), _FINISH[cut])
                      for index, (content, cut) in enumerate(answers)),
            _CHAT_TAIL % (prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        ))
    return 200, encoded, prompt_tokens, completion_tokens


def _chat_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def responses_input_text(value: Any) -> tuple[str, str]:
    """All input text and the last user text of a Responses ``input`` (string or items)."""
    if isinstance(value, str):
        return value, value
    texts, last_user = [], ""
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            text = _text_of(item.get("content"))
            texts.append(text)
            if item.get("role", "user") == "user":
                last_user = text
    return " ".join(texts), last_user


def responses(body: dict[str, Any]) -> Reply:
    if not isinstance(body.get("input"), (str, list)):
        return _invalid("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    cap, error = _positive_int(body, "max_output_tokens")
    if error:
        return error
    schema = None
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            return _invalid("Missing required parameter: 'text.format.schema'.", "text.format.schema",
                            "missing_required_parameter")
    all_text, last_user = responses_input_text(body["input"])
    instructions = body.get("instructions")
    if not isinstance(instructions, str):
        instructions = ""
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        schema = prompt_schema(f"{instructions}\n{all_text}")
    input_tokens = 3 + estimate_tokens(all_text) + estimate_tokens(instructions)
    seed = _seed(body)
    text, output_tokens, cut = _cap(_answer(keywords(last_user or all_text), seed, schema), cap)
    return 200, {
        "id": f"resp_{seed:016x}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "error": None,
        "model": body.get("model"),
        "instructions": instructions or None,
        "output": [{
            "type": "message", "id": f"msg_{seed:016x}", "status": "incomplete" if cut else "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}],
        }],
        "max_output_tokens": cap,
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": {
            "input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": body.get("metadata") or {},
    }


def embedding_inputs(value: Any) -> list[Any] | None:
    """The inputs of an embeddings body: a string, a token list, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(t, int) for t in v)) for v in value):
            return value
    return None


def _unit_vector(item: Any, model: str, dimensions: int) -> list[float]:
    seed = int.from_bytes(hashlib.blake2b(orjson.dumps([model, item]), digest_size=8).digest(), "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def embeddings(body: dict[str, Any]) -> Reply:
    inputs = embedding_inputs(body.get("input"))
    if inputs is None:
        return _invalid("Invalid 'input': expected a string, an array of strings or an array of tokens.", "input")
    model = str(body.get("model"))
    dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS.get(model, 1536))
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 8192:
        return _invalid(f"Invalid 'dimensions': expected an integer between 1 and 8192, got {dimensions!r}.",
                        "dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        tokens += estimate_tokens(item) if isinstance(item, str) else len(item)
        vector = _unit_vector(item, model, dimensions)
        encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return 200, {"object": "list", "data": data, "model": model,
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def completions(body: dict[str, Any]) -> Reply:
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        return _invalid("Invalid 'prompt': expected a string or an array of strings.", "prompt")
    cap, error = _positive_int(body, "max_tokens")
    if error:
        return error
    cap = cap or 16  # the legacy endpoint's documented default
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        return _invalid(f"Invalid 'n': expected an integer between 1 and 128, but got {n!r}.", "n")
    seed = _seed(body)
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for p_index, text in enumerate(prompts):
        prompt_tokens += estimate_tokens(text)
        for k in range(n):
            content, tokens, cut = _cap(" " + compose(keywords(text), seed + p_index * n + k), cap)
            completion_tokens += tokens
            choices.append({"text": content, "index": len(choices), "logprobs": None,
                            "finish_reason": "length" if cut else "stop"})
    return 200, {
        "id": f"cmpl-{seed:016x}", "object": "text_completion", "created": int(time.time()),
        "model": body.get("model"), "choices": choices, "system_fingerprint": None,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _moderation_categories() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(wire name, input types) of every category ``openai.types.Moderation`` defines."""
    from openai.types.moderation import CategoryAppliedInputTypes

    out = []
    for name, field in CategoryAppliedInputTypes.model_fields.items():
        literal = typing.get_args(field.annotation)[0]  # List[Literal['text', 'image']]
        out.append((field.alias or name, typing.get_args(literal)))
    return tuple(out)


MODERATION_CATEGORIES = _moderation_categories()
# Words that push a category's score over the flagging threshold (strong) or towards it.
_MODERATION_CUES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "harassment": (("idiot", "moron", "loser", "pathetic", "shut up"), ("worst", "stupid", "useless")),
    "harassment/threatening": (("watch your back", "you will regret", "i will find you"), ()),
    "hate": (("subhuman", "vermin"), ()),
    "illicit": (("buy drugs", "counterfeit", "stolen card", "pirated"), ("cheap followers", "special deal")),
    "illicit/violent": (("make a bomb", "untraceable gun"), ()),
    "self-harm": (("hurt myself", "kill myself", "end my life"), ("stopped my insulin",)),
    "self-harm/intent": (("kill myself", "end my life", "want to die"), ()),
    "self-harm/instructions": (("how to overdose",), ()),
    "sexual": (("explicit sex", "nude", "nsfw"), ("sexy",)),
    "violence": (("kill you", "stab", "shoot", "beat you up"), ("attack", "fight")),
    "violence/graphic": (("gore", "dismember", "blood everywhere"), ()),
}
MODERATION_THRESHOLD = 0.5


def _moderation_result(text: str, model: str) -> dict[str, Any]:
    """One input's categories and scores: a small seeded base score, raised by cue words."""
    lowered = text.lower()
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    applied: dict[str, list[str]] = {}
    for name, input_types in MODERATION_CATEGORIES:
        digest = hashlib.blake2b(f"{model}|{name}|{text}".encode(), digest_size=8).digest()
        unit = int.from_bytes(digest, "big") / 2**64
        strong, weak = _MODERATION_CUES.get(name, ((), ()))
        if any(cue in lowered for cue in strong):
            score = 0.6 + 0.39 * unit
        elif any(cue in lowered for cue in weak):
            score = 0.1 + 0.3 * unit
        else:
            score = 0.02 * unit
        scores[name] = round(score, 6)
        categories[name] = score >= MODERATION_THRESHOLD
        applied[name] = ["text"] if "text" in input_types else list(input_types[:1])
    return {"flagged": any(categories.values()), "categories": categories, "category_scores": scores,
            "category_applied_input_types": applied}


def _moderation_texts(value: Any) -> list[str] | None:
    """The texts of a moderations ``input``: a string, strings, or text (and image) parts."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return value
    if all(isinstance(v, dict) for v in value):  # multimodal parts: one result for all of them
        return [" ".join(v["text"] for v in value if isinstance(v.get("text"), str))]
    return None


def moderations(body: dict[str, Any]) -> Reply:
    """OpenAI's moderation object: one result per input text, deterministic scores in [0, 1]."""
    texts = _moderation_texts(body.get("input"))
    if texts is None:
        return _invalid("Invalid 'input': expected a string, an array of strings or an array of objects.", "input")
    model = body.get("model") or "omni-moderation-latest"
    if not isinstance(model, str):
        return _invalid("Invalid type for 'model': expected a string.", "model", "invalid_type")
    return 200, {"id": f"modr-{_seed(body):016x}", "model": model,
                 "results": [_moderation_result(text, model) for text in texts]}


RESPONDERS: dict[str, Callable[[dict[str, Any]], Reply]] = {
    "/v1/chat/completions": chat_completions,
    "/v1/responses": responses,
    "/v1/embeddings": embeddings,
    "/v1/completions": completions,
    "/v1/moderations": moderations,
    "/v1/images/generations": images_generations,
}


def respond_fast(endpoint: str, body: dict[str, Any]) -> Reply | EncodedReply:
    """``respond``, with chat successes already serialized (an ``EncodedReply``)."""
    if endpoint == "/v1/chat/completions":
        return chat_completions_encoded(body)
    return respond(endpoint, body)


def respond(endpoint: str, body: dict[str, Any]) -> Reply:
    """Answer one request body as the synchronous ``endpoint`` would."""
    responder = RESPONDERS.get(endpoint)
    if responder is None:
        return 404, error_body(f"Invalid URL (POST {endpoint})", "invalid_request_error")
    return responder(body)


def prompt_text(endpoint: str, body: dict[str, Any]) -> str | None:
    """The prompt a request line sends, as one text whose prefixes prompt caching compares (each
    chat message's role, then its content); None for endpoints OpenAI does not cache."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        return "".join(f"{m.get('role')}\n{_text_of(m.get('content'))}\n"
                       for m in (messages if isinstance(messages, list) else []) if isinstance(m, dict))
    if endpoint == "/v1/responses":
        instructions = body.get("instructions")
        return f"{instructions if isinstance(instructions, str) else ''}\n{responses_input_text(body.get('input'))[0]}"
    return None


def prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Estimated prompt tokens of a request line, for the enqueued-token limit."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return 3
        return 3 + sum(4 + estimate_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    if endpoint == "/v1/responses":
        instructions = body.get("instructions")
        return 3 + estimate_tokens(responses_input_text(body.get("input"))[0]) + estimate_tokens(
            instructions if isinstance(instructions, str) else "")
    if endpoint == "/v1/embeddings":
        inputs = embedding_inputs(body.get("input")) or []
        return sum(estimate_tokens(i) if isinstance(i, str) else len(i) for i in inputs)
    if endpoint == "/v1/moderations":
        return sum(estimate_tokens(t) for t in _moderation_texts(body.get("input")) or [])
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt if isinstance(prompt, list) else []
    return sum(estimate_tokens(p) for p in prompts if isinstance(p, str))
