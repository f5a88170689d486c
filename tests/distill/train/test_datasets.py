"""Training exports stand alone by default: the images travel inside the folder, which moves to any depth."""

import json
import shutil
from pathlib import Path

import pytest

from distill.train.datasets import export_llamafactory, export_trl, to_dataset


def _examples(sample_dir) -> list[dict]:
    from distill.data.records import load_json
    from distill.data.student import prompt_messages

    items = load_json(sample_dir / "text2image_dev.json").items[:2]
    return [{"messages": prompt_messages(it), "images": it.images, "completion": it.gold} for it in items]


@pytest.mark.parametrize("export,name", [(export_llamafactory, "sft.json"), (export_trl, "sft.jsonl")])
def test_exports_copy_their_images_unless_told_by_reference(tmp_path, sample_dir, export, name):
    examples = _examples(sample_dir)
    out = tmp_path / "export"
    path = export(examples, out, "sft")
    text = path.read_text()
    records = json.loads(text) if path.suffix == ".json" else [json.loads(x) for x in text.splitlines()]
    paths = [p for r in records for p in r["images"]]
    assert paths and all(p.startswith("images/") and (out / p).is_file() for p in paths)
    moved = tmp_path / "a" / "b" / "c" / "export"  # another depth: every path still leads to its image
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    assert all((moved / p).is_file() for p in paths)
    ref = export(examples, tmp_path / "ref", "sft", copy_images=False)
    assert not (tmp_path / "ref" / "images").exists() and "../" in ref.read_text()


def _rows(batch):
    return batch


def test_the_training_dataset_reads_in_spawned_loader_workers(sample_dir):
    """A training run in a spawned process (the demo's letters-only twin on a GPU) starts its data-loader workers
    by spawning too: the dataset, with its decoding transform, must pickle."""
    from torch.utils.data import DataLoader

    ds = to_dataset(_examples(sample_dir), max_pixels=12544)
    loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="spawn", collate_fn=_rows)
    [batch] = list(loader)
    assert [r["completion"][0]["content"][0]["text"] for r in batch] == [
        ex["completion"] for ex in _examples(sample_dir)
    ]
    assert all(img.size[0] * img.size[1] <= 12544 for r in batch for img in r["images"])


def _readme_snippet(marker: str) -> str:
    """The README's code block between `<!-- marker -->` and `<!-- /marker -->`."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    return block.split("```python\n", 1)[1].rsplit("```", 1)[0]


def test_a_moved_trl_export_loads_with_the_readme_snippet_from_any_working_directory(
    train_store, tmp_path, monkeypatch
):
    """`distill export sft|dpo --format trl` into one folder, the folder moved, TRL's data loaded the README's way
    from another working directory: every row's images are PIL images, read wherever the process is afterwards."""
    from PIL.Image import Image

    from distill.pipeline import run_export
    from distill.train.examples import ExampleOptions

    written = tmp_path / "written" / "export"
    for kind in ("sft", "dpo"):
        run_export(kind, train_store, written, "trl", ExampleOptions())
    work = tmp_path / "work"
    shutil.move(written, work / "runs" / "export")
    monkeypatch.chdir(work)
    first = json.loads((work / "runs/export/cover_distill_answer_train.jsonl").read_text().splitlines()[0])
    assert not Path(first["images"][0]).exists()  # as written, the path resolves only from the export folder
    names: dict = {}
    exec(_readme_snippet("trl-loading"), names)
    monkeypatch.chdir(tmp_path)  # images decode when read: from anywhere
    sft, dpo = names["sft"], names["dpo"]
    assert {r["kind"] for r in sft} == {"answer", "reason"} and set(dpo.column_names) >= {"chosen", "rejected"}
    for ds in (sft, dpo):
        for row in ds:
            blocks = [b for m in row["prompt"] for b in m["content"] if b["type"] == "image"]
            assert row["images"] and len(blocks) == len(row["images"])
            assert all(isinstance(im, Image) and im.load() is not None for im in row["images"])
