import asyncio
import json
import logging
import re

import pytest

from distill.backends.base import Backend, ChatRequest, ChatResult
from distill.backends.config import BackendConfig
from distill.data.permute import permute, rotation
from distill.data.records import load_json
from distill.predict import PredictConfig, debias, predict_items, score


class LetterBiased(Backend):
    """Prefers letter A four to one, and the gold story's content two to one: a biased but informed model."""

    def __init__(self, gold_text: str):
        super().__init__(BackendConfig(model="biased"))
        self.gold_text = gold_text
        self.calls = 0

    async def chat(self, request: ChatRequest) -> ChatResult:
        raise NotImplementedError

    async def score(self, request: ChatRequest, letters):
        from distill.data.options import parse_options

        self.calls += 1
        text = "".join(p.get("text", "") for p in request.messages[-1]["content"] if p["type"] == "text")
        opts = parse_options(text)
        raw = {o.letter: (4.0 if o.letter == "A" else 1.0) * (2.0 if o.text == self.gold_text else 1.0) for o in opts}
        z = sum(raw.values())
        return {L: raw[L] / z for L in letters}


@pytest.fixture
def item(sample_dir):
    it = load_json(sample_dir / "image2text_dev.json").items[0]
    if it.gold == "A":  # the test needs the bias and the content to disagree
        it = permute(it, rotation(4, 1))
    return it


def test_debias_picks_the_same_content_under_every_rotation(item):
    model = LetterBiased(item.gold_option.text)
    for k in range(4):
        rotated = permute(item, rotation(4, k))
        plain = asyncio.run(score(model, rotated))
        fixed = asyncio.run(debias(model, rotated, 4))
        assert sum(fixed.values()) == pytest.approx(1.0)
        assert rotated.option(max(fixed, key=fixed.get)).text == item.gold_option.text
        if rotated.gold != "A":
            assert max(plain, key=plain.get) == "A"  # without debiasing the letter bias wins


def test_prior_debias_divides_out_the_letter_prior(sample_dir):
    items = load_json(sample_dir / "image2text_train.json").items[:12]

    class Biased(LetterBiased):
        async def score(self, request, letters):
            from distill.data.options import parse_options

            text = "".join(p.get("text", "") for p in request.messages[-1]["content"] if p["type"] == "text")
            golds = {it.gold_option.text for it in items}
            opts = parse_options(text)
            raw = {o.letter: (4.0 if o.letter == "A" else 1.0) * (2.0 if o.text in golds else 1.0) for o in opts}
            z = sum(raw.values())
            return {L: raw[L] / z for L in letters}

    rows = asyncio.run(
        predict_items(Biased(""), items, PredictConfig(method="prior", prior_share=0.25, prior_min_items=2))
    )
    assert sum(r["method"] == "prior-estimate" for r in rows) == 3
    assert all(r["letter"] == it.gold for r, it in zip(rows, items))
    plain = asyncio.run(predict_items(Biased(""), items, PredictConfig(method="score")))
    assert sum(r["letter"] == it.gold for r, it in zip(plain, items)) < len(items)


@pytest.mark.slow
def test_batched_and_single_scoring_agree(tiny_model_dir, sample_dir):
    from distill.backends.transformers_backend import TransformersBackend

    items = (
        load_json(sample_dir / "text2image_dev.json").items[:3]
        + load_json(sample_dir / "image2text_dev.json").items[:3]
    )
    backend = TransformersBackend(BackendConfig(model=str(tiny_model_dir), max_pixels=50176, concurrency=8))

    async def batched():
        return await asyncio.gather(*(score(backend, it) for it in items))

    together = asyncio.run(batched())
    alone = [asyncio.run(score(backend, it)) for it in items]
    for a, b in zip(together, alone):
        for L in a:
            assert a[L] == pytest.approx(b[L], abs=2e-4)


def test_the_prediction_rate_leaves_out_the_models_start_up():
    from distill.pipeline import throughput

    assert throughput(48, 112.0, 80.0) == "48 items in 32.0s after 80.0s of model start-up (1.50 items/s)"
    assert throughput(10, 5.0, None) == "10 items in 5.0s (2.00 items/s)"  # workers on several devices


@pytest.mark.slow
def test_predict_writes_valid_answer_files(tiny_model_dir, sample_dir, tmp_path, caplog):
    from distill.data.answers import read_answers
    from distill.pipeline import run_predict

    files = [sample_dir / "image2text_test.json", sample_dir / "text2image_test.json"]
    with caplog.at_level(logging.INFO, logger="distill"):
        written = run_predict(
            str(tiny_model_dir), files, tmp_path, PredictConfig(method="debias"), max_pixels=50176, show_progress=False
        )
    assert re.search(r"\d+ items in [\d.]+s after [\d.]+s of model start-up", caplog.text)
    for task, path in written.items():
        ids = [it.id for it in load_json(sample_dir / f"{task}_test.json").items]
        assert sorted(read_answers(path)) == sorted(ids)
        details = [json.loads(line) for line in (tmp_path / f"{task}_details.jsonl").read_text().splitlines()]
        assert [d["id"] for d in details] == ids
        assert all(abs(sum(d["probs"].values()) - 1) < 1e-5 and d["method"] == "debias" for d in details)


@pytest.mark.slow
def test_data_parallel_workers_give_the_same_answers(tiny_model_dir, sample_dir, tmp_path):
    from distill.data.answers import read_answers
    from distill.pipeline import run_predict

    files = [sample_dir / "image2text_test.json", sample_dir / "text2image_test.json"]
    one = run_predict(
        str(tiny_model_dir),
        files,
        tmp_path / "one",
        PredictConfig(method="score"),
        max_pixels=12544,
        show_progress=False,
    )
    two = run_predict(
        str(tiny_model_dir),
        files,
        tmp_path / "two",
        PredictConfig(method="score"),
        max_pixels=12544,
        show_progress=False,
        devices=["cpu", "cpu"],
    )
    for task in one:
        assert read_answers(one[task]) == read_answers(two[task])
        a = [json.loads(x) for x in (tmp_path / "one" / f"{task}_details.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (tmp_path / "two" / f"{task}_details.jsonl").read_text().splitlines()]
        assert [r["id"] for r in a] == [r["id"] for r in b]
        for ra, rb in zip(a, b):
            assert ra["probs"] == pytest.approx(rb["probs"], abs=1e-4)
    assert not list((tmp_path / "two").glob("*shard*"))


@pytest.mark.slow
def test_shared_vision_work_gives_the_plain_scores(tiny_model_dir, sample_dir):
    """Each image encoded once across rotations and items: the same probabilities as encoding every prompt."""
    from distill.backends.base import ChatRequest as Request
    from distill.backends.transformers_backend import Model
    from distill.data.permute import permute as rotate
    from distill.data.student import prompt_messages

    items = (
        load_json(sample_dir / "text2image_dev.json").items[:3]
        + load_json(sample_dir / "image2text_dev.json").items[:3]
    )
    items += [rotate(it, rotation(4, 1)) for it in items]  # rotations reuse the same covers
    model = Model(BackendConfig(model=str(tiny_model_dir), max_pixels=50176))
    reqs, letters = [Request(prompt_messages(it)) for it in items], [it.letters for it in items]
    shared = model.score_sorted(reqs, letters, batch_size=4, share_vision=True)
    plain = model.score_sorted(reqs, letters, batch_size=4, share_vision=False)
    for a, b in zip(shared, plain):
        assert a == pytest.approx(b, abs=1e-5)


def test_letters_are_never_tokenized_while_the_next_batch_is(tiny_model_dir, sample_dir):
    """A fast tokenizer's padding is shared state: encoding a letter in the main thread while the preparing thread
    pads the next batch left that batch unpadded ("expected sequence of length 213 at dim 1 (got 210)")."""
    import threading
    import time

    from distill.backends.base import ChatRequest as Request
    from distill.backends.transformers_backend import Model
    from distill.data.student import prompt_messages

    items = load_json(sample_dir / "image2text_dev.json").items[:6]
    model = Model(BackendConfig(model=str(tiny_model_dir), max_pixels=3136))
    tokenizer, busy, overlaps = model.tokenizer, threading.Event(), []

    class Watched:
        def __call__(self, *args, **kwargs):  # a batch: slow enough that the main thread's work overlaps it
            busy.set()
            try:
                time.sleep(0.2)
                return tokenizer(*args, **kwargs)
            finally:
                busy.clear()

        def encode(self, *args, **kwargs):
            overlaps.append(busy.is_set())
            return tokenizer.encode(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    model.tokenizer = Watched()
    probs = model.score_sorted([Request(prompt_messages(it)) for it in items], [it.letters for it in items], 2)
    assert len(probs) == len(items) and not any(overlaps)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cot", "adaptive"])
def test_reasoning_methods_through_a_real_server(sample_dir, tmp_path, method):
    """cot (self-consistency over sampled rationales, each vote weighted by its letter's probability) and adaptive
    (score first, reason where unsure) against the sample-cover teacher served on 127.0.0.1: it reads the covers,
    so its votes are right."""
    from distill.evaluate import evaluate
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
    from distill.pipeline import run_predict

    files = [sample_dir / f"{t}_test.json" for t in ("image2text", "text2image")]
    with serving(SampleTeacherConfig(port=0, error_rate=0.0)) as url:
        run_predict(
            "sample-teacher",
            files,
            tmp_path,
            PredictConfig(method=method, samples=3, threshold=0.99),
            backend_options={"backend": "openai", "base_url": url},
            max_pixels=62720,
            show_progress=False,
        )
    report = evaluate(tmp_path, [sample_dir / f"{t}_test_gold.json" for t in ("image2text", "text2image")])
    assert report["overall"]["accuracy"] == 1.0
    rows = [
        json.loads(x)
        for t in ("image2text", "text2image")
        for x in (tmp_path / f"{t}_details.jsonl").read_text().splitlines()
    ]
    reasoned = [r for r in rows if r["method"] in ("cot", "adaptive-cot")]
    assert reasoned and all(
        len(r["rationales"]) == 3 and r["rationales"][0].rstrip().endswith(f"Answer: {r['letter']}") for r in reasoned
    )
    if method == "adaptive":
        assert all("score_probs" in r for r in reasoned)  # scored first, then reasoned because unsure


@pytest.mark.parametrize("method", ["score", "debias"])
def test_a_captioned_student_captions_each_cover_once_then_answers_with_its_captions(sample_dir, method):
    from pathlib import Path

    from distill.data.student import CAPTIONS_HEADER, DESCRIBE_INSTRUCTION

    items = load_json(sample_dir / "text2image_dev.json").items[:3]

    class Captioner(Backend):
        """Captions a cover with its file name; scores the option whose caption names the first cover."""

        def __init__(self):
            super().__init__(BackendConfig(model="captioner"))
            self.described: list[str] = []
            self.prompts: list[str] = []

        async def chat(self, request):
            content = request.messages[-1]["content"]
            assert content[-1]["text"] == DESCRIBE_INSTRUCTION
            self.described.append(content[0]["image"])
            return ChatResult(text=f"a cover\nnamed {Path(content[0]['image']).stem}")

        async def score(self, request, letters):
            text = "".join(p.get("text", "") for p in request.messages[-1]["content"])
            self.prompts.append(text)
            block = text[text.index(CAPTIONS_HEADER) :].splitlines()[1:]
            target = min(line.split("named ")[1] for line in block)  # the cover whose name sorts first
            return {L: (0.9 if f"{L}. a cover named {target}" in block else 0.1 / 3) for L in letters}

    model = Captioner()
    rows = asyncio.run(predict_items(model, items, PredictConfig(method=method, captions=True)))
    covers = {p for it in items for p in it.images}
    assert sorted(model.described) == sorted(covers)  # each cover captioned once, whatever the rotations
    assert all(CAPTIONS_HEADER in t for t in model.prompts)
    for it, row in zip(items, rows):
        assert row["captions"] == [f"a cover\nnamed {Path(p).stem}" for p in it.images]
        first = min(it.images, key=lambda p: Path(p).stem)
        assert it.option(row["letter"]).image == first  # under every rotation the captions followed their covers
    plain = Captioner()
    with pytest.raises(ValueError, match="substring not found"):  # without captions the prompt has none to read
        asyncio.run(predict_items(plain, items, PredictConfig(method=method)))
    assert plain.described == []


def test_an_item_past_the_models_context_is_refused_before_the_model_loads(
    monkeypatch, capsys, tmp_path, sample_dir, tiny_model_dir
):
    import distill.backends.factory
    from tests.cli_main import run_main

    records = json.loads((sample_dir / "image2text_test.json").read_text())[:3]
    for r in records:
        r["images"] = [str(sample_dir / p) for p in r["images"]]
    long_story = "A long cover story. " * 12_000  # 240 kB, ~48k tokens: the tiny model takes 32,768
    records[1]["input"] = records[1]["input"].replace("\nB. ", f"\nB. {long_story}", 1)
    (tmp_path / "image2text_test.json").write_text(json.dumps(records))
    monkeypatch.setattr(distill.backends.factory, "make_backend", lambda *a: pytest.fail("the model was loaded"))
    ran = run_main(
        monkeypatch, capsys, "predict", "--model", tiny_model_dir, "--data", tmp_path / "image2text_test.json",
        "--out", tmp_path / "answers",
    )  # fmt: skip
    line = ran.one_error_line("1 held-out item(s) do not fit the model's context of 32,768 tokens")
    assert f"image2text_test.json#1 id={records[1]['id']}" in line and records[0]["id"] not in line
    assert not (tmp_path / "answers").exists()
