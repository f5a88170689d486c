"""The teacher's settings: the recipe's `teacher:` section, validated. The graph receives it as its context."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from distill.backends.config import BackendConfig


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    describer: BackendConfig | None = None  # None: no descriptions (the reasoner sees the covers only)
    reasoner: BackendConfig = Field(default_factory=BackendConfig)
    max_attempts: int = Field(3, ge=1)  # un-hinted attempts per sample
    rationalize: bool = True  # one hinted (STaR) attempt after the others fail
    consistency: bool = False  # re-ask with rotated options; accepted only if the same option wins
    samples: int = Field(1, ge=1)  # independent passes per item (with temperature > 0: different traces)
    temperature: float = Field(0.7, ge=0)
    # each sampled attempt's seed derives from this (reproducible runs); None: unseeded sampling. vLLM samples
    # seeded requests one generator at a time, which costs throughput at high concurrency (bench/README.md)
    seed: int | None = None
    max_new_tokens: int = Field(512, ge=1)
    describe_tokens: int = Field(256, ge=1)
    min_words: int = Field(15, ge=0)
    max_words: int = Field(800, ge=1)
    concurrency: int = Field(8, ge=1, description="Graph passes (items) in flight at once.")
    workers: int = Field(
        1,
        ge=1,
        description="Processes that share the run, each on items of its own (item k to worker k mod N), so the "
        "client's work spreads over cores; the in-flight limits are the run's, shared among them.",
    )
    limit: int | None = Field(None, ge=1, description="The first N training items only.")

    @model_validator(mode="after")
    def _text_only_needs_descriptions(self):
        if self.reasoner.text_only and self.describer is None:
            raise ValueError("a text_only reasoner sees no images: give the teacher a describer")
        return self
