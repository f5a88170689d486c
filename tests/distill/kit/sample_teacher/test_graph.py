"""The demo's teacher recipe end to end over HTTP: the sample-cover teacher served on 127.0.0.1, the graph
through the OpenAI backend, traces in a real store, DPO pairs built from them."""

import pytest

from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
from distill.pipeline import run_teacher
from distill.recipe import load_recipe
from distill.train.examples import ExampleOptions, dpo_pairs
from store import open_store

pytestmark = pytest.mark.slow
ROOT = __import__("pathlib").Path(__file__).resolve().parents[4]


def test_the_critic_rejects_the_teachers_wrong_answers_and_pairs_follow(sample_dir, tmp_path):
    files = {
        split: [str(sample_dir / f"{t}_{split}.json") for t in ("image2text", "text2image")]
        for split in ("train", "dev", "test")
    }
    with serving(SampleTeacherConfig(port=0, error_rate=0.3, leak_rate=0.2, seed=1)) as url:
        recipe = load_recipe(
            ROOT / "configs/demo.yaml",
            {
                "workdir": str(tmp_path),
                "data.train": files["train"],
                "data.val": [],
                "data.dev": files["dev"],
                "data.test": files["test"],
                "teacher.describer.base_url": url,
                "teacher.reasoner.base_url": url,
                "teacher.limit": 24,
            },
        )
        summary = run_teacher(recipe, show_progress=False)
    assert summary.failed == 0 and summary.items == 24
    store = open_store(recipe.db)
    traces = store.traces(run_id=summary.run_id, history=True)
    items = {it.key: it for it in store.items()}
    accepted = [t for t in traces if t["verdict"] == "accepted"]
    wrong = [t for t in traces if t["verdict"] == "rejected" and t["reason"] == "wrong_answer"]
    assert accepted and wrong  # an erring teacher gives the critic both
    assert all(t["answer"] == items[t["item_key"]].gold for t in accepted)
    assert all(t["answer"] not in (None, items[t["item_key"]].gold) for t in wrong)
    assert any(t["hinted"] and t["verdict"] == "accepted" for t in traces)  # STaR recovered an item
    pairs = dpo_pairs(store, [items[k] for k in {t["item_key"] for t in traces}], ExampleOptions()).examples
    assert pairs
    for p in pairs:
        gold = items[p["item_key"]].gold
        assert p["chosen"].rstrip().endswith(f"Answer: {gold}")
        assert not p["rejected"].rstrip().endswith(f"Answer: {gold}")


def test_the_graph_reads_its_items_from_the_store(sample_dir, tmp_path):
    """Loaded once, the items live in the store: the data files may go, and the graph still runs on them."""
    import shutil

    from distill.pipeline import load_files

    data = shutil.copytree(sample_dir, tmp_path / "data")
    files = [data / f"{t}_train.json" for t in ("image2text", "text2image")]
    load_files(files, tmp_path / "s.db")
    for f in files:
        f.unlink()
    with serving(SampleTeacherConfig(port=0, error_rate=0.0)) as url:
        recipe = load_recipe(
            ROOT / "configs/demo.yaml",
            {
                "workdir": str(tmp_path),
                "db": str(tmp_path / "s.db"),
                "teacher.describer.base_url": url,
                "teacher.reasoner.base_url": url,
                "teacher.limit": 6,
            },
        )
        summary = run_teacher(recipe, show_progress=False)
    store = open_store(tmp_path / "s.db")
    assert summary.failed == 0 and summary.items == 6
    assert {t["item_key"] for t in store.traces(run_id=summary.run_id)} <= {it.key for it in store.items(split="train")}
