"""Model backends behind one small interface: OpenAI-compatible HTTP, in-process transformers, vLLM."""
