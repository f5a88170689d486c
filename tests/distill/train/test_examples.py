from datasets import load_dataset

from distill.train.datasets import export_llamafactory, export_trl, to_dataset, trl_record
from distill.train.examples import ExampleOptions, dpo_pairs, sft_examples
from store import open_store


def test_sft_examples_from_accepted_traces(train_store):
    s = open_store(train_store)
    items = s.items(split="train")
    built = sft_examples(s, items, ExampleOptions(direct_share=0.5))
    rationale = [e for e in built.examples if e["kind"] == "rationale"]
    direct = [e for e in built.examples if e["kind"] == "direct"]
    assert built.skipped["hinted"] == sum(1 for k in range(len(items)) if k % 5 == 0)
    assert len(rationale) == len(items) - built.skipped["hinted"]
    assert len(direct) == round(len(rationale) * 0.5)
    gold = {it.key: it.gold for it in items}
    for e in rationale:
        assert e["completion"].endswith(f"\nAnswer: {gold[e['item_key']]}")
        assert "hint" not in e["completion"].lower()
    assert all(e["completion"] == gold[e["item_key"]] for e in direct)
    val_ids = {it.key for it in s.items(split="val")}
    assert not val_ids & {e["item_key"] for e in built.examples}


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
    built = sft_examples(
        s, s.items(split="train"), ExampleOptions(direct_share=1.0, curriculum="easy_to_hard", include_hinted=True)
    )
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
    assert set(ds.column_names) == {"prompt", "completion", "images"} and len(ds) == len(sft)
    ds = load_dataset("json", data_files=str(export_trl(dpo, tmp_path, "dpo")), split="train")
    assert set(ds.column_names) == {"prompt", "chosen", "rejected", "images"}
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
    ex = sft_examples(s, s.items(split="train")[:2], ExampleOptions(direct_share=1.0)).examples
    row = to_dataset(ex, 3136)[0]
    assert row["images"][0].mode == "RGB" and row["images"][0].width * row["images"][0].height <= 3136
    blocks = row["prompt"][-1]["content"]
    assert sum(b == {"type": "image"} for b in blocks) == len(row["images"]) == len(ex[0]["images"])
    source = ex[0]["messages"][-1]["content"]
    assert [b.get("text") for b in blocks] == [p.get("text") for p in source]  # text and image order kept


def test_pairs_per_item_caps_the_pairs_of_an_item(tmp_path, sample_dir):
    from distill.data.loaders import load_json

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
