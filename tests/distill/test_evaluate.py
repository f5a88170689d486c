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
        ({"a1": "A", "a2": "Z"}, "not a single letter"),
    ],
)
def test_clear_errors(tmp_path, answers, needle):
    _write(tmp_path, "image2text", answers, {"a1": "A", "a2": "B"})
    with pytest.raises(AnswerError, match=needle):
        evaluate(tmp_path, [tmp_path / "image2text_gold.json"])


def _mac_csv(path, items):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["journal", "id", "question", "cover_image", "answer", "option_A", "option_B", "option_C", "option_D"]
        )
        for it in items:
            w.writerow([it.journal, it.id, "Which story?", it.images[0], it.gold] + [o.text for o in it.options])


def test_a_mac_csv_is_a_key_too(tmp_path, sample_dir):
    from distill.data.records import load_json

    items = load_json(sample_dir / "image2text_dev.json").items
    _mac_csv(tmp_path / "mac_image2text_dev.csv", items)
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
        tmp_path / "image2text_bad.json": ["id 'a1' has output 3", "A-D"],
        tmp_path / "image2text_empty.json": ["found an empty array", "expected"],
        tmp_path / "nope.json": ["file not found"],
    }
    for gold, needles in cases.items():
        ran = run_main(monkeypatch, capsys, "eval", "--answers", tmp_path, "--gold", gold)
        ran.one_error_line(str(gold), *needles)
