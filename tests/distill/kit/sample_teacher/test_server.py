"""The sample-cover teacher as a real server process on 127.0.0.1, driven by the real `openai` client with the
requests the project's agents, backends and student prompts build."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from agents.critic import LEAK
from agents.describer import describe_request
from agents.reasoner import answer_request, rationale_of, reason, reason_request
from distill.backends.base import ChatRequest
from distill.backends.config import BackendConfig
from distill.backends.openai_backend import OpenAIBackend, build_chat_kwargs, score_kwargs
from distill.data.letters import parse_answer
from distill.data.records import load_json
from distill.data.student import prompt_messages

pytestmark = pytest.mark.slow
MODEL = "sample-teacher"


@pytest.fixture(scope="module")
def items(covers_dir):
    i2t = load_json(covers_dir / "image2text_train.json").items[:6]
    t2i = load_json(covers_dir / "text2image_train.json").items[:4]
    return i2t + t2i


@pytest.fixture(scope="module")
def honest(serve):
    return serve(0.0, 0.0)


@pytest.fixture(scope="module")
def descriptions(honest, items):
    """The describer's captions of the items' covers, by path."""
    paths = {p for it in items for p in it.cover_images()}
    return {p: _ask(honest, describe_request(p)).choices[0].message.content for p in paths}


@pytest.fixture(scope="module")
def erring(serve):
    return serve(1.0, 1.0)


def _config(url: str, **kw) -> BackendConfig:
    return BackendConfig(backend="openai", base_url=url, model=MODEL, **kw)


def _ask(url: str, request: ChatRequest, **kw):
    return OpenAI(base_url=url, api_key="EMPTY").chat.completions.create(
        **build_chat_kwargs(_config(url, **kw), request)
    )


def test_lists_its_model(honest):
    assert [m.id for m in OpenAI(base_url=honest, api_key="EMPTY").models.list()] == [MODEL]


def test_the_caption_names_what_the_cover_shows(honest, items, covers_dir):
    truth = json.loads((covers_dir / "covers.json").read_text())
    for path in items[0].cover_images() + items[-1].cover_images():
        motif = truth[str(Path(path).relative_to(covers_dir))]
        colour, shape = motif["colour"], motif["shape"]
        small = _ask(honest, describe_request(path), max_pixels=12_544)
        text = small.choices[0].message.content
        assert colour in text and f"{shape}s" in text, text
        assert "Answer:" not in text  # a request without options is one to describe, not a question
        assert small.choices[0].finish_reason == "stop" and small.usage.completion_tokens > 10
        full = _ask(honest, describe_request(path))
        # the image's own tokens are counted: 8x10 patches of 28 px at full size, 3x4 at 84x112
        assert full.usage.prompt_tokens - small.usage.prompt_tokens == 80 - 12


def test_the_reasoner_finds_the_gold_unless_it_errs(honest, erring, items):
    right = 0
    for it in items:
        text = _ask(honest, reason_request(it, {})).choices[0].message.content
        assert text.splitlines()[-1] == f"Answer: {parse_answer(text, it.letters)}", text
        right += parse_answer(text, it.letters) == it.gold
        wrong = _ask(erring, reason_request(it, {})).choices[0].message.content
        assert parse_answer(wrong, it.letters) not in (it.gold, None), wrong
    assert right >= 0.9 * len(items)


def test_a_text_only_reasoner_reads_the_descriptions(honest, items, descriptions):
    right = 0
    for it in items:
        resp = _ask(honest, reason_request(it, descriptions, text_only=True), text_only=True)
        text = resp.choices[0].message.content
        assert "descri" in text  # it says it reasons from descriptions, not from pixels
        right += parse_answer(text, it.letters) == it.gold
    assert right >= 0.9 * len(items)


def test_descriptions_are_read_by_their_option_labels(honest, items, descriptions):
    """The gold cover's description swapped with a wrong one's: a text-only reasoner follows the descriptions to
    the wrong option, deciding by colour rather than guessing; one that sees the covers follows the pixels."""
    for it in [it for it in items if it.task == "text2image"]:
        wrong = next(x for x in it.letters if x != it.gold)
        gold_cover, wrong_cover = it.option(it.gold).image, it.option(wrong).image
        swapped = descriptions | {gold_cover: descriptions[wrong_cover], wrong_cover: descriptions[gold_cover]}
        misled = _ask(honest, reason_request(it, swapped, text_only=True), text_only=True).choices[0].message.content
        assert parse_answer(misled, it.letters) == wrong and "The colour decides" in misled, misled
        seen = _ask(honest, reason_request(it, swapped)).choices[0].message.content
        assert parse_answer(seen, it.letters) == it.gold and "The colour decides" in seen, seen


def test_a_hint_is_followed_and_sometimes_leaked(honest, erring, items, descriptions):
    for it in items[:4] + items[-2:]:
        wrong = next(x for x in it.letters if x != it.gold)
        for described in ({}, descriptions):  # the demo's STaR attempt brings the describer's captions too
            kept = _ask(honest, reason_request(it, described, hint=wrong)).choices[0].message.content
            assert parse_answer(kept, it.letters) == wrong and kept.splitlines()[-1] == f"Answer: {wrong}"
            assert not LEAK.search(rationale_of(kept))
        leaked = _ask(erring, reason_request(it, {}, hint=it.gold)).choices[0].message.content
        assert parse_answer(leaked, it.letters) == it.gold  # the hint outweighs its misreadings
        assert LEAK.search(rationale_of(leaked))


def test_structured_outputs(honest, items):
    it = items[0]
    full = parse_answer(_ask(honest, reason_request(it, {})).choices[0].message.content, it.letters)
    # a rationale cut short names no letter; the forced follow-up turn gives the one it was heading for
    req = reason_request(it, {}, max_tokens=5)
    cut = _ask(honest, req, structured="choice").choices[0]
    assert cut.finish_reason == "length" and parse_answer(cut.message.content, it.letters) is None
    forced = _ask(honest, answer_request(req, cut.message.content, it.letters), structured="choice")
    assert forced.choices[0].message.content == full
    others = [x for x in it.letters if x != full]
    narrowed = _ask(honest, ChatRequest(req.messages, max_tokens=1, choices=others), structured="choice")
    assert narrowed.choices[0].message.content in others
    as_json = _ask(honest, reason_request(it, {}, structured=True), structured="json_schema")
    body = json.loads(as_json.choices[0].message.content)
    assert body["answer"] == full and len(body["reasoning"].split()) > 15


def test_the_project_backend_scores_and_reasons(honest, items):
    async def run():
        backend = OpenAIBackend(_config(honest, structured="choice", max_retries=1))
        try:
            out = []
            for it in (items[1], items[-1]):
                req = reason_request(it, {}, max_tokens=10)
                _, text, letter = await reason(backend, req, it.letters)
                out.append((it, letter, await backend.score(req, it.letters)))
            return out
        finally:
            await backend.aclose()

    for it, letter, dist in asyncio.run(run()):
        assert letter == it.gold
        assert abs(sum(dist.values()) - 1) < 1e-6 and max(dist, key=dist.get) == letter and dist[letter] > 0.5


def test_scoring_logprobs_are_a_distribution(honest, items):
    client = OpenAI(base_url=honest, api_key="EMPTY")
    for it in (items[2], items[-2]):
        req = ChatRequest(prompt_messages(it))
        answer = _ask(honest, req).choices[0].message.content
        for structured in ("choice", "none"):
            resp = client.chat.completions.create(
                **score_kwargs(_config(honest, structured=structured), req, it.letters)
            )
            first = resp.choices[0].logprobs.content[0]
            top = {t.token: t.logprob for t in first.top_logprobs}
            assert set(top) == set(it.letters)
            assert abs(sum(math.exp(v) for v in top.values()) - 1) < 1e-4
            assert max(top, key=top.get) == answer == first.token


def test_student_prompts(honest, items):
    for it in (items[3], items[-3]):
        direct = _ask(honest, ChatRequest(prompt_messages(it), max_tokens=4)).choices[0].message.content
        assert direct == it.gold
        cot = _ask(honest, ChatRequest(prompt_messages(it, mode="cot"), max_tokens=512)).choices[0].message.content
        assert cot.splitlines()[-1] == f"Answer: {it.gold}" and len(cot.split()) > 20
        as_system = _ask(honest, ChatRequest(prompt_messages(it, layout="system"), max_tokens=4))
        assert as_system.choices[0].message.content == it.gold


def test_replies_are_seeded(erring, items):
    changed = 0
    for it in items:
        req = reason_request(it, {})
        first, again = (_ask(erring, req).choices[0].message.content for _ in range(2))
        assert first == again
        retry = _ask(erring, reason_request(it, {}, feedback="It did not end with a line 'Answer: X'."))
        changed += parse_answer(retry.choices[0].message.content, it.letters) != parse_answer(first, it.letters)
    assert changed > 0  # a request that differs draws anew: here, another wrong option


def test_rejects_what_it_cannot_serve(honest):
    client = OpenAI(base_url=honest, api_key="EMPTY", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="data URL"):
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.org/cover.png"}}],
                }
            ],
        )
    with pytest.raises(openai.BadRequestError, match="does not decode"):
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}],
                }
            ],
        )
