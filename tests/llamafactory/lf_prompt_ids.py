"""Prompt token ids exactly as LLaMA-Factory 0.9.5's `scripts/vllm_infer.py` feeds them to vLLM, with the
image pads expanded the way vLLM's Qwen2-VL/Qwen2.5-VL processor expands them.

Run with the LLaMA-Factory venv (tests/llamafactory/setup_llamafactory.sh):

    .venv-lf/bin/python tests/llamafactory/lf_prompt_ids.py --dataset_dir DIR --dataset NAME \
        --model MODEL_DIR --template qwen2_vl [--image_max_pixels N] --out FILE.jsonl

What vllm_infer.py does (LF 0.9.5 scripts/vllm_infer.py), and this script repeats with LF's own code:
  * get_infer_args(dict(model_name_or_path, dataset, dataset_dir, template, cutoff_len=2048, max_samples,
    default_system, enable_thinking, ...))                                          (lines 81-100)
  * load_tokenizer + get_template_and_fix_tokenizer, then
    `template_obj.mm_plugin.expand_mm_tokens = False`                               (lines 103-106)
  * get_dataset(template_obj, ..., stage "ppo") -> UnsupervisedDatasetProcessor: input_ids are the prompt
    (system + user turn + "<|im_start|>assistant\n"), each <image> becoming
    "<|vision_start|><|image_pad|><|vision_end|>" (one pad, not expanded)            (line 128)
  * per record: prompt_token_ids = batch["input_ids"][j]; images =
    mm_plugin._regularize_images(paths, image_max_pixels=768*768, image_min_pixels=32*32)  (lines 160-164, 203)
  * vLLM then replaces each <|image_pad|> by grid_t*grid_h*grid_w // merge_size**2 pads, the grid coming from
    the model's HF image processor run on those regularized images.  This script does that last step with the
    model's own image processor, so `prompt_ids` is the sequence the model actually sees.

Output: one line per record in dataset order: {"index": k, "prompt_ids": [...]} (+ "n_image_tokens" per image,
and "unexpanded_len").  --check also builds the prompts through LF's training-side expansion
(expand_mm_tokens=True with the same pixel limits) and asserts the ids are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def build_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--dataset", required=True, help="registered dataset name(s), comma separated (as LF)")
    p.add_argument("--model", required=True, help="model_name_or_path")
    p.add_argument("--template", default="qwen2_vl")
    p.add_argument("--out", required=True)
    # vllm_infer.py's defaults
    p.add_argument("--image_max_pixels", type=int, default=768 * 768)
    p.add_argument("--image_min_pixels", type=int, default=32 * 32)
    p.add_argument("--cutoff_len", type=int, default=2048)
    p.add_argument("--max_samples", type=int, default=None)
    p.add_argument("--default_system", default=None)
    p.add_argument("--enable_thinking", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--media_dir", default=None, help="LF's media_dir (vllm_infer.py cannot set it: dataset_dir)")
    p.add_argument(
        "--preprocessing_num_workers", type=int, default=None, help="vllm_infer.py uses 16; the ids do not depend on it"
    )
    p.add_argument(
        "--with_text",
        action="store_true",
        help="also write prompt_text: the unexpanded ids decoded with special tokens (what vllm_infer.py "
        "decodes into its `prompt` field, but with skip_special_tokens=False)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also build the ids with LF's own token expansion and assert they are equal",
    )
    return p.parse_args()


def load(args, expand: bool):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_tokenizer
    from transformers import Seq2SeqTrainingArguments

    infer = dict(
        model_name_or_path=args.model,
        dataset=args.dataset,
        dataset_dir=args.dataset_dir,
        template=args.template,
        cutoff_len=args.cutoff_len,
        max_samples=args.max_samples,
        preprocessing_num_workers=args.preprocessing_num_workers,
        default_system=args.default_system,
        enable_thinking=args.enable_thinking,
    )
    if args.media_dir:
        infer["media_dir"] = args.media_dir
    if expand:  # LF's training-side expansion reads the limits from the processor (patcher.py sets them)
        infer.update(image_max_pixels=args.image_max_pixels, image_min_pixels=args.image_min_pixels)
    model_args, data_args, _, _ = get_infer_args(infer)
    training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp(prefix="lf_prompt_ids_"), report_to=[])
    tokenizer_module = load_tokenizer(model_args)
    template_obj = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    template_obj.mm_plugin.expand_mm_tokens = expand
    dataset_module = get_dataset(template_obj, model_args, data_args, training_args, "ppo", **tokenizer_module)
    return template_obj, tokenizer_module, dataset_module["train_dataset"]


def main() -> int:
    args = build_args()
    template_obj, tokenizer_module, ds = load(args, expand=False)
    tokenizer, processor = tokenizer_module["tokenizer"], tokenizer_module["processor"]
    plugin = template_obj.mm_plugin
    image_token_id = tokenizer.convert_tokens_to_ids(plugin.image_token) if plugin.image_token else None
    image_processor = getattr(processor, "image_processor", None) if processor is not None else None
    merge_length = getattr(image_processor, "merge_size", 1) ** 2 if image_processor is not None else 1

    rows = []
    for k in range(len(ds)):
        ex = ds[k]
        ids = list(ex["input_ids"])
        counts = []
        if ex["images"]:
            images = plugin._regularize_images(
                ex["images"], image_max_pixels=args.image_max_pixels, image_min_pixels=args.image_min_pixels
            )["images"]
            grid = image_processor(images=images, return_tensors="pt")["image_grid_thw"]
            counts = [int(g.prod()) // merge_length for g in grid]
            out, it = [], iter(counts)
            for t in ids:
                out.extend([image_token_id] * next(it) if t == image_token_id else [t])
            if next(it, None) is not None:
                raise RuntimeError(f"record {k}: fewer {plugin.image_token} than images (cutoff_len truncated?)")
            ids = out
        row = {"index": k, "prompt_ids": ids, "n_image_tokens": counts, "unexpanded_len": len(ex["input_ids"])}
        if args.with_text:
            row["prompt_text"] = tokenizer.decode(ex["input_ids"], skip_special_tokens=False)
            row["images"] = ex["images"]
        rows.append(row)

    if args.check:
        _, _, ds2 = load(args, expand=True)
        assert len(ds2) == len(rows), (len(ds2), len(rows))
        for r in rows:
            lf_ids = list(ds2[r["index"]]["input_ids"])
            if lf_ids != r["prompt_ids"]:
                raise SystemExit(
                    f"record {r['index']}: LF's expanded ids differ ({len(lf_ids)} vs {len(r['prompt_ids'])})"
                )
        print(f"check: LF's expand_mm_tokens=True ids equal for all {len(rows)} records", file=sys.stderr)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(rows)} records to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
