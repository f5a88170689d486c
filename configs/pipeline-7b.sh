#!/usr/bin/env bash
# The whole pipeline for the real Qwen2.5-VL-7B-Instruct on one 8x80 GB box (paths as in the recipes).
# Teacher: `vllm serve` on some GPUs (see configs/teacher-vllm.yaml for the serve commands); training and
# prediction on all eight once the teacher is done.
set -euo pipefail

distill graph  --config configs/teacher-vllm.yaml                      # resumable: --resume RUN_ID
distill augment --config configs/teacher-vllm.yaml --out runs/mac/augment        # the recipe names the store
accelerate launch --config_file configs/accelerate/ddp.yaml -m distill.cli sft --config configs/sft-7b.yaml
accelerate launch --config_file configs/accelerate/ddp.yaml -m distill.cli dpo --config configs/dpo-7b.yaml
# the image cap and prompt layout come with the model (recorded by training)
distill predict --model runs/mac/dpo/merged --backend vllm --devices 0,1,2,3,4,5,6,7 --method debias \
                --data /data/mac/image2text_test.json --data /data/mac/text2image_test.json --out runs/mac/answers
distill predict --model runs/mac/dpo/merged --backend vllm --devices 0,1,2,3,4,5,6,7 --method debias \
                --data /data/mac/image2text_dev.json --data /data/mac/text2image_dev.json --out runs/mac/dev-answers
distill eval --answers runs/mac/dev-answers --gold /data/mac/image2text_dev.json --gold /data/mac/text2image_dev.json
