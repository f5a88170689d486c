import json

import pytest

from distill.data.answers import AnswerError, from_llamafactory, read_answers, validate, write_answers


def test_valid_answers_pass_and_are_written_atomically(tmp_path):
    path = write_answers(tmp_path / "image2text_answer.json", {"a": "B", "b": "D"}, ["a", "b"])
    assert json.loads(path.read_text()) == [{"id": "a", "output": "B"}, {"id": "b", "output": "D"}]
    assert read_answers(path) == {"a": "B", "b": "D"}
    assert [p.name for p in tmp_path.iterdir()] == ["image2text_answer.json"]  # no temp files left


@pytest.mark.parametrize(
    "answers,needle",
    [
        ([{"id": "a", "output": "B"}], "missing"),
        ([{"id": "a", "output": "B"}, {"id": "a", "output": "C"}, {"id": "b", "output": "A"}], "duplicate"),
        ([{"id": "a", "output": "E"}, {"id": "b", "output": "A"}], "not a single letter"),
        ([{"id": "a", "output": "b"}, {"id": "b", "output": "A"}], "not a single letter"),
        ([{"id": "a", "output": "A"}, {"id": "b", "output": "A"}, {"id": "z", "output": "A"}], "not in the test set"),
        ([{"id": "a", "output": "A", "conf": 1}, {"id": "b", "output": "A"}], "exactly 'id' and 'output'"),
    ],
)
def test_invalid_answers_are_refused(answers, needle):
    with pytest.raises(AnswerError, match=needle):
        validate(answers, ["a", "b"])


def test_refused_write_leaves_the_old_file(tmp_path):
    path = write_answers(tmp_path / "x_answer.json", {"a": "A"}, ["a"])
    with pytest.raises(AnswerError):
        write_answers(path, {"a": "A"}, ["a", "b"])
    assert read_answers(path) == {"a": "A"}


def test_llamafactory_conversion_parses_strictly_and_fills_without_bias(tmp_path):
    lines = [
        {"prompt": "p", "predict": "C", "label": "C"},
        {"prompt": "p", "predict": "The answer is (B).", "label": "B"},
        {"prompt": "p", "predict": "<think>A or D? A seems off.</think>\nD", "label": "D"},
        {"prompt": "p", "predict": "Answer: a", "label": "A"},
        {"prompt": "p", "predict": "I cannot tell.", "label": "A"},
        {"prompt": "p", "predict": "B. The cover with hexagons", "label": "B"},
        {"prompt": "p", "predict": "A cover with violet diamonds in a ring matches story D.", "label": "D"},
        {"prompt": "p", "predict": "<think>The covers differ in colour; A has", "label": "C"},
        {"prompt": "p", "predict": "A cover with red circles.", "label": "C"},
        {"prompt": "p", "predict": "**C**", "label": "C"},
    ]
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json at all\n")
    ids = [f"q{i}" for i in range(11)]
    letters, rows = from_llamafactory(path, ids, [list("ABCD")] * 11)
    assert [letters[f"q{i}"] for i in (0, 1, 2, 3, 5, 6, 9)] == ["C", "B", "D", "A", "B", "D", "C"]
    unparsed = {r["line"]: r for r in rows if not r["parsed"]}
    assert set(unparsed) == {5, 8, 9, 11}  # never the article "A", never a cut-off <think>
    assert "unfinished <think>" in unparsed[8]["why"] and unparsed[11]["why"] == "not a JSON object"
    # parsed answers chose A 1, B 2, C 2, D 2: fills go to the least-chosen letter, one after another
    assert [unparsed[n]["letter"] for n in (5, 8, 9, 11)] == ["A", "A", "B", "C"]
    assert all(r["filled_by"] == "least-chosen" for r in unparsed.values())
    fixed, _ = from_llamafactory(path, ids, [list("ABCD")] * 11, fallback="D")
    assert [fixed[f"q{n - 1}"] for n in (5, 8, 9, 11)] == ["D"] * 4
    with pytest.raises(AnswerError, match="pair up in order"):
        from_llamafactory(path, ids[:3], [list("ABCD")] * 3)
