"""Examples -> what trainers read: a `datasets.Dataset` for TRL (images loaded lazily through the shared
image policy), or files for TRL's `load_dataset` and for LLaMA-Factory."""

from __future__ import annotations

import json
from pathlib import Path

from distill.fileio import atomic_write_json, atomic_write_text
from distill.images import load_image


def _hf_content(content) -> list[dict]:
    """Neutral content -> TRL's structured blocks: images become placeholders filled from `images`."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [{"type": "image"} if p["type"] == "image" else {"type": "text", "text": p["text"]} for p in content]


def trl_record(ex: dict) -> dict:
    """One example as TRL's conversational prompt/completion (or preference) record, image paths apart."""
    rec = {"prompt": [{"role": m["role"], "content": _hf_content(m["content"])} for m in ex["messages"]],
           "images": list(ex["images"])}
    for key in ("completion", "chosen", "rejected"):
        if key in ex:
            rec[key] = [{"role": "assistant", "content": [{"type": "text", "text": ex[key]}]}]
    return rec


def to_dataset(examples: list[dict], max_pixels: int):
    """A Dataset whose rows hold JSON text; decoding and image loading happen per row when read, so the
    images are never all in memory and nested message blocks keep their exact keys."""
    from datasets import Dataset

    rows = [{"record": json.dumps(trl_record(ex), ensure_ascii=False)} for ex in examples]
    ds = Dataset.from_list(rows) if rows else Dataset.from_dict({"record": []})

    def decode(batch):
        recs = [json.loads(r) for r in batch["record"]]
        out = {k: [r[k] for r in recs] for k in recs[0] if k != "images"} if recs else {}
        out["images"] = [[load_image(p, max_pixels) for p in r["images"]] for r in recs]
        return out

    return ds.with_transform(decode)


def export_trl(examples: list[dict], out_dir: str | Path, name: str) -> Path:
    """JSONL that `datasets.load_dataset("json", data_files=...)` reads; images as paths."""
    out = Path(out_dir)
    text = "".join(json.dumps(trl_record(ex), ensure_ascii=False) + "\n" for ex in examples)
    return atomic_write_text(out / f"{name}.jsonl", text)


def _sharegpt_text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join("<image>" if p["type"] == "image" else p["text"] for p in content)


def export_llamafactory(examples: list[dict], out_dir: str | Path, name: str) -> Path:
    """ShareGPT-style JSON plus its `dataset_info.json` entry (DPO: `ranking: true` with chosen/rejected)."""
    out = Path(out_dir)
    records, preference = [], any("chosen" in ex for ex in examples)
    for ex in examples:
        system = next((m["content"] for m in ex["messages"] if m["role"] == "system"), "")
        conv = [{"from": "human" if m["role"] == "user" else "gpt", "value": _sharegpt_text(m["content"])}
                for m in ex["messages"] if m["role"] != "system"]
        rec = {"conversations": conv, "system": system, "images": list(ex["images"])}
        if preference:
            rec["chosen"] = {"from": "gpt", "value": ex["chosen"]}
            rec["rejected"] = {"from": "gpt", "value": ex["rejected"]}
        else:
            rec["conversations"] = conv + [{"from": "gpt", "value": ex["completion"]}]
        records.append(rec)
    atomic_write_json(out / f"{name}.json", records)
    entry = {"file_name": f"{name}.json", "formatting": "sharegpt",
             "columns": {"messages": "conversations", "system": "system", "images": "images"},
             "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    if preference:
        entry["ranking"] = True
        entry["columns"].update(chosen="chosen", rejected="rejected")
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = entry
    atomic_write_json(info_path, info, indent=2)
    return out / f"{name}.json"
