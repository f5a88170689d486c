"""Merging a LoRA adapter into its base: a standalone folder that vLLM and transformers load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from distill.data.student_card import card_path


def merge_adapter(
    adapter_dir: str | Path, out_dir: str | Path, base: str | None = None, overwrite: bool = False
) -> Path:
    """Written to a temporary folder beside `out_dir`, then moved into place: never half a model, and nothing left
    behind when it fails. An output folder that cannot be written fails before any weights load."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from distill.backends.base import require_local_model
    from distill.data.fileio import require_writable_dir

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = base or cfg["base_model_name_or_path"]
    require_local_model(base, "base model")
    require_writable_dir(out.parent)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp)
        src = (
            adapter_dir
            if (adapter_dir / "preprocessor_config.json").exists() or (adapter_dir / "processor_config.json").exists()
            else base
        )
        AutoProcessor.from_pretrained(src).save_pretrained(tmp)
        card = card_path(adapter_dir)
        if card is not None:  # the merged model answers as the adapter was trained to
            shutil.copy2(card, tmp / card.name)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
