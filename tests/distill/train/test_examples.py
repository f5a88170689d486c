from datasets import load_dataset

from distill.train.datasets import export_llamafactory, export_trl, to_dataset, trl_record
from distill.train.examples import ExampleOptions, dpo_pairs, sft_examples
from store import open_store


def test_each_task_comes_from_its_own_table_and_never_from_held_out_items(train_store):
    s = open_store(train_store)
    items = s.items(split="train")
    built = sft_examples(s, items, ExampleOptions(describe_weight=1))
    by_kind = {k: [e for e in built.examples if e["kind"] == k] for k in ("answer", "reason", "describe")}
    gold = {it.key: it.gold for it in items}
    # answer: one per training item, the gold letter alone
    assert sorted(e["item_key"] for e in by_kind["answer"]) == sorted(gold)
    assert all(e["completion"] == gold[e["item_key"]] for e in by_kind["answer"])
    # reason: the accepted, unhinted traces, each ending in its gold answer line
    assert built.skipped["hinted"] == sum(1 for k in range(len(items)) if k % 5 == 0)
    assert len(by_kind["reason"]) == len(items) - built.skipped["hinted"]
    for e in by_kind["reason"]:
        assert (
            e["completion"]
            == f"The colour and the shapes of the cover match this story's motifs.\nAnswer: {gold[e['item_key']]}"
        )
    # describe: the describer's text of each distinct training cover it captioned, and nothing else
    texts = s.descriptions()
    train_covers = {p for it in items for p in it.images}
    assert by_kind["describe"] and {e["images"][0] for e in by_kind["describe"]} <= train_covers
    assert len({e["image_sha256"] for e in by_kind["describe"]}) == len(by_kind["describe"])
    assert all(e["completion"] == texts[e["image_sha256"]] for e in by_kind["describe"])
    assert all(
        len(e["messages"]) == 1 and e["messages"][0]["content"][0]["type"] == "image" for e in by_kind["describe"]
    )
    assert built.skipped["cover_not_described"] > 0  # the last item's covers have no caption
    held_out = s.items(split="val") + s.items(split="dev") + s.items(split="test")
    assert not {it.key for it in held_out} & {e["item_key"] for e in built.examples}
    assert not {p for it in held_out for p in it.images} & {p for e in built.examples for p in e["images"]}


def test_captioned_prompts_carry_the_describers_captions_of_the_items_own_covers(train_store):
    from distill.data.student import CAPTIONS_HEADER

    s = open_store(train_store)
    items = {it.key: it for it in s.items(split="train")}
    texts, sha_of = s.descriptions(), s.image_hashes()
    built = sft_examples(s, list(items.values()), ExampleOptions(captions=True))
    assert {e["kind"] for e in built.examples} == {"answer", "reason"}
    for e in built.examples:
        it = items[e["item_key"]]
        text = "".join(p.get("text", "") for p in e["messages"][-1]["content"])
        block = text[text.index(CAPTIONS_HEADER) :].splitlines()[1 : 1 + len(it.images)]
        assert [line.split(" ", 1)[1] for line in block] == [" ".join(texts[sha_of[p]].split()) for p in it.images]
        if it.task == "text2image":  # each option's cover under its own letter
            assert [line.split(" ", 1)[0] for line in block] == [f"{L}." for L in it.letters]
    uncaptioned = [it for it in items.values() if not all(sha_of.get(p) in texts for p in it.images)]
    assert uncaptioned and built.skipped["item_cover_not_described"] == len(uncaptioned)
    assert not {it.key for it in uncaptioned} & {e["item_key"] for e in built.examples}
    plain = sft_examples(s, list(items.values()), ExampleOptions())
    assert not any(CAPTIONS_HEADER in str(e["messages"]) for e in plain.examples)


def test_examples_do_not_depend_on_the_order_traces_finished(train_store):
    s = open_store(train_store)
    items = s.items(split="train")
    first = sft_examples(s, items, ExampleOptions(), seed=3).examples
    assert sft_examples(s, list(reversed(items)), ExampleOptions(), seed=3).examples == first
    assert (
        dpo_pairs(s, list(reversed(items)), ExampleOptions(), seed=3).examples
        == dpo_pairs(s, items, ExampleOptions(), seed=3).examples
    )


def test_task_weights_and_answer_first(train_store):
    s = open_store(train_store)
    items = s.items(split="train")
    only = sft_examples(s, items, ExampleOptions(reason_weight=0, describe_weight=0)).examples
    assert {e["kind"] for e in only} == {"answer"} and len(only) == len(items)
    first = sft_examples(s, items, ExampleOptions(reason_weight=0, describe_weight=0, answer_first=True)).examples
    gold = {it.key: it.gold for it in items}
    for e in first:  # the letter is still the first token: letter scoring reads it as a direct answer
        assert e["completion"].split("\n")[0] == gold[e["item_key"]]
    assert sum("\n" in e["completion"] for e in first) == len(items) - sum(1 for k in range(len(items)) if k % 5 == 0)


def test_answer_repeats_give_the_letters_more_examples_and_nothing_else(train_store):
    from collections import Counter

    import pytest

    from distill.errors import UserError

    s = open_store(train_store)
    items = s.items(split="train")
    once = Counter(e["kind"] for e in sft_examples(s, items, ExampleOptions()).examples)
    thrice = sft_examples(s, items, ExampleOptions(answer_repeats=3)).examples
    kinds = Counter(e["kind"] for e in thrice)
    assert kinds == once | {"answer": 3 * once["answer"]}
    answers = [e for e in thrice if e["kind"] == "answer"]
    assert len({e["id"] for e in answers}) == len(answers)  # three distinct examples of each item's letter
    assert len({e["template"] for e in answers}) > 1  # each with a template of its own
    with pytest.raises(UserError, match="answer_repeats"):
        ExampleOptions(answer_repeats=0)


def test_dpo_pairs_share_the_prompt(train_store):
    from distill.data.student import prompt_messages
    from distill.data.templates import system_for

    s = open_store(train_store)
    items = {it.key: it for it in s.items(split="train")}
    built = dpo_pairs(s, list(items.values()), ExampleOptions(pairs_per_item=3))
    assert built.examples
    for p in built.examples:
        it = items[p["item_key"]]
        # one prompt for both answers: the item's question in chain-of-thought mode, under the pair's template
        assert p["messages"] == prompt_messages(it, "cot", system=system_for(it, p["template"]))
        record = trl_record(p)
        assert record["prompt"] and record["chosen"][0]["role"] == record["rejected"][0]["role"] == "assistant"
        assert p["chosen"] != p["rejected"]
        assert p["chosen"].rsplit("Answer: ", 1)[1] != p["rejected"].rsplit("Answer: ", 1)[1]
    assert max(sum(p["item_key"] == i for p in built.examples) for i in {p["item_key"] for p in built.examples}) == 1


def test_curriculum_orders_easy_to_hard(train_store):
    s = open_store(train_store)
    built = sft_examples(s, s.items(split="train"), ExampleOptions(curriculum="easy_to_hard", include_hinted=True))
    d = [e["difficulty"] for e in built.examples]
    assert d == sorted(d) and d[0] < d[-1]


def test_exports_load_with_datasets_and_move_with_their_images(train_store, tmp_path):
    import json
    import shutil

    s = open_store(train_store)
    items = s.items(split="train")
    sft = sft_examples(s, items, ExampleOptions()).examples
    dpo = dpo_pairs(s, items, ExampleOptions()).examples
    ds = load_dataset("json", data_files=str(export_trl(sft, tmp_path, "sft")), split="train")
    assert set(ds.column_names) == {"prompt", "completion", "images", "kind"} and len(ds) == len(sft)
    ds = load_dataset("json", data_files=str(export_trl(dpo, tmp_path, "dpo")), split="train")
    assert set(ds.column_names) == {"prompt", "chosen", "rejected", "images", "kind"}
    lf = export_llamafactory(sft, tmp_path / "lf", "cd_sft", copy_images=True)
    export_llamafactory(dpo, tmp_path / "lf", "cd_dpo", copy_images=True)
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["cd_dpo"]["ranking"] is True and "ranking" not in info["cd_sft"]
    rec = json.loads(lf.read_text())[0]
    assert rec["input"].count("<image>") == len(rec["images"]) and rec["output"] == sft[0]["completion"]
    moved = shutil.move(tmp_path / "lf", tmp_path / "elsewhere" / "lf")
    for path in json.loads((moved / "cd_sft.json").read_text())[0]["images"]:
        assert not path.startswith("/") and (moved / path).is_file()  # relative to the folder, which carries them
    assert (
        "conversations" not in load_dataset("json", data_files=str(moved / "cd_sft.json"), split="train").column_names
    )


def test_lazy_dataset_loads_capped_rgb_images(train_store):
    s = open_store(train_store)
    ex = sft_examples(s, s.items(split="train")[:2], ExampleOptions(reason_weight=0, describe_weight=0)).examples
    row = to_dataset(ex, 3136)[0]
    assert row["images"][0].mode == "RGB" and row["images"][0].width * row["images"][0].height <= 3136
    blocks = row["prompt"][-1]["content"]
    assert sum(b == {"type": "image"} for b in blocks) == len(row["images"]) == len(ex[0]["images"])
    source = ex[0]["messages"][-1]["content"]
    assert [b.get("text") for b in blocks] == [p.get("text") for p in source]  # text and image order kept


def test_pairs_per_item_caps_the_pairs_of_an_item(tmp_path, sample_dir):
    from distill.data.records import load_json

    s = open_store(tmp_path / "p.db")
    item = load_json(sample_dir / "image2text_dev.json").items[0].model_copy(update={"split": "train"})
    s.add_items([item])
    run = s.start_run("graph", {})
    wrong = [L for L in item.letters if item.gold != L]
    traces = [
        {
            "sample": k,
            "attempt": 0,
            "hinted": 0,
            "answer": item.gold,
            "verdict": "accepted",
            "reason": "ok",
            "rationale": f"good reasoning number {k}",
        }
        for k in range(2)
    ]
    traces += [
        {
            "sample": k,
            "attempt": 1,
            "hinted": 0,
            "answer": wrong[k],
            "verdict": "rejected",
            "reason": "wrong_answer",
            "rationale": f"bad reasoning number {k}",
        }
        for k in range(2)
    ]
    s.finish_item(run, item.key, 1, "accepted", traces)
    for cap, expected in ((1, 1), (3, 3), (9, 4)):  # at most every (accepted, rejected) combination
        pairs = dpo_pairs(s, [item], ExampleOptions(pairs_per_item=cap)).examples
        assert len(pairs) == expected
        assert len({(p["chosen"], p["rejected"]) for p in pairs}) == expected  # no pair twice


def test_sft_export_writes_one_registered_dataset_per_task(train_store, tmp_path):
    import json

    from distill.pipeline import run_export

    paths, n, _ = run_export("sft", train_store, tmp_path / "lf", "llamafactory", ExampleOptions(describe_weight=1))
    names = sorted(p.stem for p in paths)
    assert names == ["cover_distill_answer_train", "cover_distill_describe_train", "cover_distill_reason_train"]
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert sorted(info) == names and sum(len(json.loads(p.read_text())) for p in paths) == n
    describe = json.loads((tmp_path / "lf" / "cover_distill_describe_train.json").read_text())
    assert all(r["input"].startswith("<image>") and r["input"].count("<image>") == 1 for r in describe)
