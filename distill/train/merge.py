"""Merging a LoRA adapter into its base: a standalone folder that vLLM and transformers load."""

from __future__ import annotations

from pathlib import Path


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None) -> Path:
    import json

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = base or cfg["base_model_name_or_path"]
    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out)
    src = adapter_dir if (adapter_dir / "preprocessor_config.json").exists() or \
        (adapter_dir / "processor_config.json").exists() else base
    AutoProcessor.from_pretrained(src).save_pretrained(out)
    return out
