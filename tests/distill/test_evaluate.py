import json

import pytest

from distill.data.answers import AnswerError
from distill.evaluate import ece, evaluate


def _write(tmp_path, task, answers, gold, details=None):
    (tmp_path / f"{task}_answer.json").write_text(json.dumps([{"id": i, "output": a} for i, a in answers.items()]))
    (tmp_path / f"{task}_gold.json").write_text(
        json.dumps(
            [{"id": i, "output": g, "journal": "Cell" if i.endswith("1") else "Nature"} for i, g in gold.items()]
        )
    )
    if details:
        (tmp_path / f"{task}_details.jsonl").write_text("".join(json.dumps(d) + "\n" for d in details))


def test_numbers_match_a_hand_computed_example(tmp_path):
    _write(
        tmp_path,
        "image2text",
        {"a1": "A", "a2": "B", "a3": "C", "a4": "D"},
        {"a1": "A", "a2": "B", "a3": "C", "a4": "A"},
        [
            {"id": "a1", "probs": {"A": 0.9, "B": 0.1}},
            {"id": "a2", "probs": {"B": 0.9, "A": 0.1}},
            {"id": "a3", "probs": {"C": 0.6, "A": 0.4}},
            {"id": "a4", "probs": {"D": 0.6, "A": 0.4}},
        ],
    )
    _write(tmp_path, "text2image", {"b1": "A", "b2": "A"}, {"b1": "A", "b2": "C"})
    r = evaluate(tmp_path, [tmp_path / "image2text_gold.json", tmp_path / "text2image_gold.json"], tmp_path)
    assert r["tasks"]["image2text"]["accuracy"] == 0.75
    assert r["tasks"]["text2image"]["accuracy"] == 0.5
    assert r["overall"]["accuracy"] == pytest.approx(4 / 6)  # item-weighted, not the mean of 0.75 and 0.5
    assert r["tasks"]["image2text"]["confusion"]["A"] == {"A": 1, "D": 1}
    # ECE: bin (0.8, 0.9]: conf 0.9, acc 1 -> 0.1 * 2/4; bin (0.5, 0.6]: conf 0.6, acc 0.5 -> 0.1 * 2/4
    assert r["tasks"]["image2text"]["ece"] == pytest.approx(0.1)
    assert r["tasks"]["image2text"]["per_journal"]["Cell"] == {"n": 1, "accuracy": 1.0}
    assert (tmp_path / "eval.png").stat().st_size > 1000
    assert "| **overall** | 6 | **66.7%** |" in (tmp_path / "eval.md").read_text()


def test_the_keys_task_is_read_by_the_one_name_rule(tmp_path):
    _write(tmp_path, "image2text", {"a1": "A"}, {"a1": "A"})
    key = json.loads((tmp_path / "image2text_gold.json").read_text())
    (tmp_path / "latest-image2text.key.json").write_text(json.dumps(key))
    (tmp_path / "preimage2text_gold.json").write_text(json.dumps(key))  # the task only inside another word
    assert evaluate(tmp_path, [tmp_path / "latest-image2text.key.json"])["tasks"]["image2text"]["accuracy"] == 1.0
    with pytest.raises(AnswerError, match="cannot tell the task from the file name"):
        evaluate(tmp_path, [tmp_path / "preimage2text_gold.json"])


def test_ece_of_a_perfectly_calibrated_set_is_zero():
    assert ece([0.5, 0.5], [True, False])[0] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "answers,needle",
    [
        ({"a1": "A"}, "missing"),
        ({"a1": "A", "a2": "B", "zz": "C"}, "extra"),
        ({"a1": "A", "a2": "b"}, "not a single capital letter"),
        ({"a1": "A", "a2": "AB"}, "not a single capital letter"),
    ],
)
def test_clear_errors(tmp_path, answers, needle):
    _write(tmp_path, "image2text", answers, {"a1": "A", "a2": "B"})
    with pytest.raises(AnswerError, match=needle):
        evaluate(tmp_path, [tmp_path / "image2text_gold.json"])


def test_a_mac_csv_is_a_key_too(tmp_path, sample_dir):
    from distill.data.records import load_json
    from tests.helpers import write_mac_csv

    items = load_json(sample_dir / "image2text_dev.json").items
    write_mac_csv(tmp_path / "mac_image2text_dev.csv", items)
    answers = {
        it.id: it.gold if k else next(letter for letter in "ABCD" if letter != it.gold) for k, it in enumerate(items)
    }
    (tmp_path / "image2text_answer.json").write_text(json.dumps([{"id": i, "output": a} for i, a in answers.items()]))
    r = evaluate(tmp_path, [tmp_path / "mac_image2text_dev.csv"])
    assert r["tasks"]["image2text"]["n"] == len(items)
    assert r["tasks"]["image2text"]["accuracy"] == pytest.approx((len(items) - 1) / len(items))


def test_a_wrong_gold_file_says_what_was_expected_and_what_was_found(monkeypatch, capsys, tmp_path, sample_dir):
    from tests.cli_main import run_main

    _write(tmp_path, "image2text", {"a1": "A"}, {"a1": "A"})
    (tmp_path / "image2text_gold.txt").write_text("journal,id,answer\nNature,a1,A\n")  # a CSV by another name
    (tmp_path / "image2text_key.json").write_text(json.dumps({"a1": "A"}))
    (tmp_path / "image2text_ids.json").write_text(json.dumps([{"id": "a1", "answer": "A"}]))
    (tmp_path / "image2text_bad.json").write_text(json.dumps([{"id": "a1", "output": 3}]))
    (tmp_path / "image2text_empty.json").write_text("[]")
    cases = {
        sample_dir / "dataset_info.json": ["LLaMA-Factory registry", "image2text_dev.json", "expected"],
        tmp_path / "image2text_gold.txt": ["not valid JSON", "expected a labelled task file"],
        tmp_path / "image2text_key.json": ["found an object with keys ['a1']", "expected"],
        tmp_path / "image2text_ids.json": ["record #0 has keys ['answer', 'id']", '{"id", "output"}'],
        tmp_path / "image2text_bad.json": ["id 'a1' has output 3", "A-Z"],
        tmp_path / "image2text_empty.json": ["found an empty array", "expected"],
        tmp_path / "nope.json": ["file not found"],
    }
    for gold, needles in cases.items():
        ran = run_main(monkeypatch, capsys, "eval", "--answers", tmp_path, "--gold", gold)
        ran.one_error_line(str(gold), *needles)


def test_items_with_six_options_load_predict_and_score_by_one_letter_rule(tmp_path, sample_dir):
    """Gold F loads, a prediction of F is written to the answer file, and `eval` reads it and scores it right."""
    import asyncio
    import shutil

    from distill.backends.base import Backend
    from distill.backends.config import BackendConfig
    from distill.data.answers import read_answers, write_answers
    from distill.data.options import parse_options
    from distill.pipeline import load_tests
    from distill.predict import PredictConfig, predict_items

    cover = json.loads((sample_dir / "image2text_dev.json").read_text())[0]["images"][0]
    shutil.copy(sample_dir / cover, tmp_path / "cover.jpg")
    stories = [f"Story {n}: a cover about topic {n}." for n in range(6)]
    body = "\n".join(f"{L}. {s}" for L, s in zip("ABCDEF", stories))
    records = [
        {
            "id": f"six-{k}",
            "system": "s",
            "input": f"<image>\nWhich story?\n{body}",
            "output": "F",
            "images": ["cover.jpg"],
        }
        for k in range(3)
    ]
    (tmp_path / "image2text_dev.json").write_text(json.dumps(records))

    class KnowsTheLastStory(Backend):
        async def chat(self, request):
            raise NotImplementedError

        async def score(self, request, letters):
            text = "".join(p.get("text", "") for p in request.messages[-1]["content"] if p["type"] == "text")
            good = {o.letter for o in parse_options(text) if o.text == stories[5]}
            return {L: 0.9 if L in good else 0.1 / (len(letters) - 1) for L in letters}

    [items] = load_tests([tmp_path / "image2text_dev.json"], split="dev").values()
    assert [it.letters for it in items] == [list("ABCDEF")] * 3 and {it.gold for it in items} == {"F"}
    backend = KnowsTheLastStory(BackendConfig(model="fake"))
    for method in ("score", "debias"):
        rows = asyncio.run(predict_items(backend, items, PredictConfig(method=method)))
        assert [r["letter"] for r in rows] == ["F"] * 3, method
    answers = tmp_path / "answers"
    write_answers(answers / "image2text_answer.json", {r["id"]: r["letter"] for r in rows}, [it.id for it in items])
    assert set(read_answers(answers / "image2text_answer.json").values()) == {"F"}
    report = evaluate(answers, [tmp_path / "image2text_dev.json"], answers)
    assert report["tasks"]["image2text"]["accuracy"] == 1.0
    assert report["tasks"]["image2text"]["confusion"]["F"] == {"F": 3}
    assert "| gold | A | B | C | D | E | F |" in (answers / "eval.md").read_text()
    (tmp_path / "image2text_key.json").write_text(json.dumps([{"id": it.id, "output": "F"} for it in items]))
    assert evaluate(answers, [tmp_path / "image2text_key.json"])["overall"]["accuracy"] == 1.0  # a bare key too
