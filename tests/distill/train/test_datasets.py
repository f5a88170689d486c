"""Training exports stand alone by default: the images travel inside the folder, which moves to any depth."""

import json
import shutil

import pytest

from distill.train.datasets import export_llamafactory, export_trl


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
