"""Loading the student: the model and processor under the shared image policy, LoRA or full fine-tuning."""

from __future__ import annotations

from distill.backends.base import require_local_model
from distill.backends.vision_attention import use_varlen_vision_attention
from distill.data.images import cap_processor
from distill.train.arguments import DistillArguments

LANGUAGE_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_dtype(requested: str | None, bf16: bool, use_peft: bool, train_projector: bool = False) -> str:
    """The weights' dtype: the recipe's, or for "auto" bf16 when a bf16 run trains only LoRA adapters over a frozen
    base (the base is never updated, so float32 would only double its memory: 30 GB instead of 15 for the 7B;
    PEFT keeps the adapters in float32) and float32 otherwise: full fine-tuning, and a trained projector (PEFT's
    `modules_to_save` copy would stay bf16, and AdamW would round small updates away), keep float32 master
    weights under bf16 autocast."""
    if requested not in (None, "auto"):
        return requested
    return "bfloat16" if bf16 and use_peft and not train_projector else "float32"


def load_model(margs, dargs: DistillArguments, training_args, max_pixels: int):
    """Loaded here rather than through TRL's `model_init_kwargs`: the frozen vision tower's gradient hook
    (`distill.patches.text_only_input_grads`) must be in place before TRL wraps the model for PEFT. `max_pixels`:
    the run's image cap, set on the processor (the one image policy)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    require_local_model(margs.model_name_or_path)
    bf16 = getattr(training_args, "bf16", False)
    kw = {"dtype": getattr(torch, load_dtype(margs.dtype, bf16, margs.use_peft, dargs.train_projector))}
    if margs.attn_implementation:
        kw["attn_implementation"] = margs.attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(margs.model_name_or_path, **kw)
    if dargs.varlen_vision:
        on_gpu = torch.cuda.is_available() and not getattr(training_args, "use_cpu", False)
        autocast = torch.bfloat16 if bf16 else torch.float16 if getattr(training_args, "fp16", False) else None
        use_varlen_vision_attention(model, "cuda" if on_gpu else "cpu", autocast_dtype=autocast)
    processor = AutoProcessor.from_pretrained(margs.model_name_or_path)
    cap_processor(processor, max_pixels)
    if not margs.use_peft:
        for name, p in model.named_parameters():
            if dargs.freeze_vision and ".visual." in f".{name}" and not (dargs.train_projector and "merger" in name):
                p.requires_grad_(False)
    if dargs.freeze_vision:
        from distill.patches import text_only_input_grads

        text_only_input_grads(model)
    return model, processor


def peft_config(margs, dargs: DistillArguments):
    """TRL's LoRA config from the recipe, with its targets scoped to the language model: Qwen2.5-VL's vision
    blocks have MLP layers of the same names (gate_proj, up_proj, down_proj), which a plain name list would
    also adapt."""
    from trl import get_peft_config

    config = get_peft_config(margs)
    if config is None:
        return None
    targets = margs.lora_target_modules or LANGUAGE_LINEARS
    targets = [targets] if isinstance(targets, str) else list(targets)
    if targets == ["all-linear"]:
        targets = LANGUAGE_LINEARS
    scope = r".*\.language_model\." if dargs.freeze_vision else r".*\.(language_model|visual)\."
    config.target_modules = scope + r".*\.(" + "|".join(targets) + r")"
    if dargs.train_projector:
        config.modules_to_save = list(config.modules_to_save or []) + ["merger"]
    config.task_type = "CAUSAL_LM"
    return config
