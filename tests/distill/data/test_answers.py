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
        ([{"id": "a", "output": "AB"}, {"id": "b", "output": "A"}], "not a single capital letter"),
        ([{"id": "a", "output": "b"}, {"id": "b", "output": "A"}], "not a single capital letter"),
        ([{"id": "a", "output": ["A"]}, {"id": "b", "output": "A"}], "not a single capital letter"),
        ([{"id": ["a"], "output": "A"}, {"id": "b", "output": "A"}], "is not a string"),
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


def test_llamafactory_lines_keep_their_own_numbers_and_say_what_is_missing(tmp_path):
    path = tmp_path / "generated_predictions.jsonl"
    lines = [
        json.dumps({"prompt": "p", "predict": "Answer: C", "label": ""}),
        "",  # a blank line: skipped, but counted as a line of the file
        json.dumps({"prompt": "p", "label": ""}),  # no predict field
        "   ",
        json.dumps({"prompt": "p", "predict": "", "label": ""}),
        json.dumps({"prompt": "p", "predict": None, "label": ""}),
    ]
    path.write_text("\n".join(lines) + "\n")
    _, rows = from_llamafactory(path, ["a", "b", "c", "d"], [list("ABCD")] * 4)
    assert [r["line"] for r in rows] == [1, 3, 5, 6]
    assert [r.get("why") for r in rows] == [None, "no `predict` field", "empty reply", "`predict` is null"]


@pytest.mark.parametrize(
    "reply,letter",
    [
        ("b", "B"),  # a lone letter counts in either case, as the parenthesised form does
        ("(b)", "B"),
        ("The answer is (c).", "C"),
        ("the answer is c.", "C"),
        ("Answer: d", "D"),
        ("After comparing the covers:\na", "A"),
        ("The answer is a cover with red circles.", None),  # never the article
        ("Answer: a cover with red circles", None),
    ],
)
def test_llamafactory_replies_follow_one_case_rule(tmp_path, reply, letter):
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text(json.dumps({"prompt": "", "predict": reply, "label": ""}) + "\n")
    _, [row] = from_llamafactory(path, ["a"], [list("ABCD")])
    assert (row["letter"] if row["parsed"] else None) == letter


# vllm_infer.py's `prompt` for an image2text record (special tokens skipped, its default)
_PROMPT = (
    "system\nYou are a helpful assistant.\nuser\n# Requirement\n You are an excellent scientific image reader.\n"
    "Which story matches the cover?\n\nA. Lattices of crimson hexagons\nB. Violet diamonds in a ring\n"
    "C. Teal stripes in rows\nD. Amber dots scattered\nassistant\n"
)


@pytest.mark.parametrize(
    "reply,letter",
    [
        ('```json\n{"answer": "C"}\n```', "C"),  # a JSON reply in a code fence
        ('{"answer": "(C)"}', "C"),  # the value is read as the reply "(C)" is
        ('{"answer": "C."}', "C"),
        ('{"Answer": "C"}', "C"),  # the key in any case
        ('Based on the teal stripes, my choice is:\n```json\n{"answer": "C"}\n```', "C"),  # words before it
        ('The cover shows rows. {"reasoning": "Option B is violet, not teal.", "answer": "c"}', "C"),
        ('{"answer": "a"}', "A"),  # a lone value: nothing after it, so not the article
        ('{"answer": "a cover with teal stripes"}', None),  # the article, as in free text
        ('{"answer": ""}', None),
        ("(C)", "C"),  # the same rule in free text
        ("C.", "C"),
    ],
)
def test_llamafactory_json_replies_are_read_by_the_free_text_rule(tmp_path, reply, letter):
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text(json.dumps({"prompt": _PROMPT, "predict": reply, "label": "C"}) + "\n")
    _, [row] = from_llamafactory(path, ["a"], [list("ABCD")])
    assert (row["letter"] if row["parsed"] else None) == letter


def _vllm_infer_prompt(item, special_tokens: bool) -> str:
    """What vllm_infer.py writes as `prompt`: the prompt ids decoded, image tokens shown or (by default) skipped."""
    image = "<|vision_start|><|image_pad|><|vision_end|>" if special_tokens else ""
    user = f"{item.system}\n{item.input}".replace("<image>", image)
    if special_tokens:
        return (
            f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
    return f"system\nYou are a helpful assistant.\nuser\n{user}\nassistant\n"


@pytest.mark.parametrize("special_tokens", [False, True])
def test_llamafactory_lines_must_belong_to_the_test_records(tmp_path, sample_dir, special_tokens):
    from distill.data.records import load_json

    i2t = load_json(sample_dir / "image2text_test.json").items[:3]
    t2i = load_json(sample_dir / "text2image_test.json").items[:3]
    path = tmp_path / "generated_predictions.jsonl"

    def write(items):
        path.write_text(
            "".join(
                json.dumps({"prompt": _vllm_infer_prompt(it, special_tokens), "predict": "A", "label": ""}) + "\n"
                for it in items
            )
        )

    write(i2t)
    letters, _ = from_llamafactory(path, [it.id for it in i2t], [it.letters for it in i2t], records=i2t)
    assert letters == {it.id: "A" for it in i2t}
    write(t2i)  # text2image predictions against the image2text test file
    with pytest.raises(AnswerError) as exc:
        from_llamafactory(path, [it.id for it in i2t], [it.letters for it in i2t], records=i2t)
    msg = str(exc.value)
    assert "\n" not in msg and f"{path} line 1: not a prediction for test record {i2t[0].id}" in msg
    assert ("image(s)" if special_tokens else "question") in msg
    write([i2t[1], i2t[0], i2t[2]])  # the right task, out of order
    with pytest.raises(AnswerError, match="line 1: .*does not hold the record's question"):
        from_llamafactory(path, [it.id for it in i2t], [it.letters for it in i2t], records=i2t)


def test_a_prompt_cut_at_cutoff_len_inside_the_question_still_matches(sample_dir):
    from distill.data.answers import prompt_problem
    from distill.data.records import load_json

    a, b = load_json(sample_dir / "image2text_test.json").items[:2]
    full = _vllm_infer_prompt(a, special_tokens=False)
    cut = full[: full.index(a.input.replace("<image>", "")[:40]) + 150]
    assert prompt_problem(full, a) is None and prompt_problem(cut, a) is None
    assert prompt_problem(cut, b) == "the prompt does not hold the record's question"
