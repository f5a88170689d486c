from datasets import load_dataset

from distill.train.datasets import export_llamafactory, export_trl, to_dataset
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
    gold = {it.id: it.gold for it in items}
    for e in rationale:
        assert e["completion"].endswith(f"\nAnswer: {gold[e['item_id']]}")
        assert "hint" not in e["completion"].lower()
    assert all(e["completion"] == gold[e["item_id"]] for e in direct)
    val_ids = {it.id for it in s.items(split="val")}
    assert not val_ids & {e["item_id"] for e in built.examples}


def test_dpo_pairs_share_the_prompt(train_store):
    s = open_store(train_store)
    built = dpo_pairs(s, s.items(split="train"), ExampleOptions(pairs_per_item=3))
    assert built.examples
    for p in built.examples:
        assert p["chosen"] != p["rejected"]
        assert p["chosen"].rsplit("Answer: ", 1)[1] != p["rejected"].rsplit("Answer: ", 1)[1]
    assert max(sum(p["item_id"] == i for p in built.examples) for i in {p["item_id"] for p in built.examples}) == 1


def test_curriculum_orders_easy_to_hard(train_store):
    s = open_store(train_store)
    built = sft_examples(s, s.items(split="train"), ExampleOptions(direct_share=1.0, curriculum="easy_to_hard",
                                                                   include_hinted=True))
    d = [e["difficulty"] for e in built.examples]
    assert d == sorted(d) and d[0] < d[-1]


def test_exports_load_with_datasets(train_store, tmp_path):
    s = open_store(train_store)
    items = s.items(split="train")
    sft = sft_examples(s, items, ExampleOptions()).examples
    dpo = dpo_pairs(s, items, ExampleOptions()).examples
    ds = load_dataset("json", data_files=str(export_trl(sft, tmp_path, "sft")), split="train")
    assert set(ds.column_names) == {"prompt", "completion", "images"} and len(ds) == len(sft)
    ds = load_dataset("json", data_files=str(export_trl(dpo, tmp_path, "dpo")), split="train")
    assert set(ds.column_names) == {"prompt", "chosen", "rejected", "images"}
    lf = export_llamafactory(sft, tmp_path / "lf", "cd_sft")
    export_llamafactory(dpo, tmp_path / "lf", "cd_dpo")
    import json

    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["cd_dpo"]["ranking"] is True and "ranking" not in info["cd_sft"]
    rec = json.loads(lf.read_text())[0]
    n_img = sum(m["value"].count("<image>") for m in rec["conversations"])
    assert n_img == len(rec["images"]) and rec["conversations"][-1]["from"] == "gpt"
    ds = load_dataset("json", data_files=str(lf), split="train")
    assert "conversations" in ds.column_names


def test_lazy_dataset_loads_capped_rgb_images(train_store):
    s = open_store(train_store)
    ex = sft_examples(s, s.items(split="train")[:2], ExampleOptions(direct_share=1.0)).examples
    row = to_dataset(ex, 3136)[0]
    assert row["images"][0].mode == "RGB" and row["images"][0].width * row["images"][0].height <= 3136
    assert row["prompt"][-1]["content"][0] in ({"type": "image"}, {"type": "text", "text": row["prompt"][-1]["content"][0].get("text")})
