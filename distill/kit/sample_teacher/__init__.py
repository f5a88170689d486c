"""A stand-in teacher for the sample covers of `distill.kit.sample_data`: it reads their pixels (`reading`), says
what a teacher would (`reasoning`) and serves it through an OpenAI-compatible HTTP API (`server`), the path a
real VLM teacher under `vllm serve` takes. It is valid only on those sample covers."""
