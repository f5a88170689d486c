"""Examples -> what trainers read: a `datasets.Dataset` for TRL (images loaded lazily through the shared
image policy), or files for TRL's `load_dataset` and for LLaMA-Factory."""

from __future__ import annotations

import json
from pathlib import Path

from distill.data.fileio import atomic_write_json, atomic_write_text
from distill.data.images import load_image


def _hf_content(content) -> list[dict]:
    """Neutral content -> TRL's structured blocks: images become placeholders filled from `images`."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [{"type": "image"} if p["type"] == "image" else {"type": "text", "text": p["text"]} for p in content]


def trl_record(ex: dict) -> dict:
    """One example as TRL's conversational prompt/completion (or preference) record, image paths apart."""
    rec = {
        "prompt": [{"role": m["role"], "content": _hf_content(m["content"])} for m in ex["messages"]],
        "images": list(ex["images"]),
        "kind": ex.get("kind", "answer"),
    }
    for key in ("completion", "chosen", "rejected"):
        if key in ex:
            rec[key] = [{"role": "assistant", "content": [{"type": "text", "text": ex[key]}]}]
    return rec


class DecodeRows:
    """The dataset's transform: JSON rows -> records with their images loaded. A class, not a closure, so the
    dataset pickles into data-loader workers that are spawned (as they are in a process that was itself spawned)."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels

    def __call__(self, batch: dict) -> dict:
        recs = [json.loads(r) for r in batch["record"]]
        out = {k: [r[k] for r in recs] for k in recs[0] if k != "images"} if recs else {}
        out["images"] = [[load_image(p, self.max_pixels) for p in r["images"]] for r in recs]
        return out


def to_dataset(examples: list[dict], max_pixels: int):
    """A Dataset whose rows hold JSON text; decoding and image loading happen per row when read, so the
    images are never all in memory and nested message blocks keep their exact keys."""
    from datasets import Dataset

    rows = [{"record": json.dumps(trl_record(ex), ensure_ascii=False)} for ex in examples]
    ds = Dataset.from_list(rows) if rows else Dataset.from_dict({"record": []})

    return ds.with_transform(DecodeRows(max_pixels))


def portable_images(paths: list[str], out: Path, copy: bool = True) -> list[str]:
    """Image paths for an export folder, relative to it (the folder LLaMA-Factory takes as `dataset_dir`, and its
    default `media_dir`). With `copy` (the exports' default), each image is hard linked (copied across file
    systems) into OUTPUT/images: the folder stands alone and moves anywhere. Without it the paths lead from the
    folder to the images where they are, and break once the folder moves to another depth."""
    import os
    import shutil

    out_paths = []
    for p in paths:
        src = Path(p).resolve()
        if copy:
            from distill.data.images import sha256_file

            dest = out / "images" / f"{sha256_file(src)[:12]}{src.suffix.lower()}"
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copy2(src, dest)
            src = dest
        out_paths.append(os.path.relpath(src, out))
    return out_paths


def export_trl(examples: list[dict], out_dir: str | Path, name: str, copy_images: bool = True) -> Path:
    """JSONL that `datasets.load_dataset("json", data_files=...)` reads; image paths relative to the folder, which
    TRL (reading a path from its working directory) gets resolved by the README's loading snippet."""
    out = Path(out_dir)
    lines = [
        json.dumps(trl_record(ex | {"images": portable_images(ex["images"], out, copy_images)}), ensure_ascii=False)
        for ex in examples
    ]
    return atomic_write_text(out / f"{name}.jsonl", "".join(line + "\n" for line in lines))


def lf_prompt(messages: list[dict]) -> dict:
    """A rendered prompt as an alpaca record's `system` and `input`: the user turn verbatim (its images as
    `<image>`), the system turn or "" for the chat template's default. LLaMA-Factory rebuilds exactly this prompt
    from the columns written by `register`."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    [user] = [m for m in messages if m["role"] == "user"]
    text = (
        user["content"]
        if isinstance(user["content"], str)
        else "".join("<image>" if p["type"] == "image" else p["text"] for p in user["content"])
    )
    return {"system": system, "input": text}


LF_COLUMNS = {"system": "system", "query": "input", "response": "output", "images": "images"}


def register(out: Path, name: str, file: Path, ranking: bool = False) -> None:
    """Add `name` to OUTPUT/dataset_info.json (alpaca formatting; `file` relative to the folder)."""
    entry: dict = {"file_name": file.name, "columns": dict(LF_COLUMNS)}
    if ranking:
        entry["ranking"] = True
        entry["columns"] |= {"chosen": "chosen", "rejected": "rejected"}
        del entry["columns"]["response"]
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = entry
    atomic_write_json(info_path, info, indent=2)


def export_llamafactory(examples: list[dict], out_dir: str | Path, name: str, copy_images: bool = True) -> Path:
    """Alpaca records plus their `dataset_info.json` entry (DPO: `ranking: true` with chosen/rejected)."""
    out = Path(out_dir)
    preference = any("chosen" in ex for ex in examples)
    records = []
    for ex in examples:
        rec = lf_prompt(ex["messages"]) | {"images": portable_images(ex["images"], out, copy_images)}
        rec |= {"chosen": ex["chosen"], "rejected": ex["rejected"]} if preference else {"output": ex["completion"]}
        records.append(rec)
    path = atomic_write_json(out / f"{name}.json", records)
    register(out, name, path, ranking=preference)
    return path


def export_items(
    items: list, out_dir: str | Path, name: str, layout: str, copy_images: bool = True, with_gold: bool = False
) -> Path:
    """Held-out items (dev/test) for LLaMA-Factory's `vllm_infer.py`, in the given prompt layout, with ids: the
    prompts it builds are the ones `distill` trains and predicts with. Their output is "" (no answer leaves with a
    held-out item) unless `with_gold`, which writes the gold letter ("" where unknown)."""
    from distill.data.student import prompt_messages

    out = Path(out_dir)
    records = [
        lf_prompt(prompt_messages(it, layout=layout))
        | {
            "output": (it.gold or "") if with_gold else "",
            "images": portable_images(it.images, out, copy_images),
            "id": it.id,
        }
        for it in items
    ]
    path = atomic_write_json(out / f"{name}.json", records)
    register(out, name, path)
    return path
