"""Several replicas of one teacher: requests spread over the live ones, a dead one is set aside, not fatal."""

import asyncio

import pytest

from agents.settings import TeacherConfig
from distill.backends.config import BackendConfig
from distill.backends.openai_backend import OpenAIBackend
from distill.data.records import load_json
from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving
from graphs.runner import run_items

pytestmark = pytest.mark.slow
DEAD = "http://127.0.0.1:9/v1"  # nothing listens there: connections are refused


def test_requests_spread_over_replicas_and_a_dead_one_is_skipped(sample_dir, store):
    items = load_json(sample_dir / "image2text_dev.json").items + load_json(sample_dir / "text2image_dev.json").items
    store.add_items(items)
    teacher = SampleTeacherConfig(port=0, error_rate=0.0)
    with serving(teacher) as a, serving(teacher) as b:
        cfg = BackendConfig(
            backend="openai",
            base_url=[a, DEAD, b],
            model="sample-teacher",
            max_retries=2,
            concurrency=4,
            timeout_s=60,
            max_pixels=62720,
        )
        backend = OpenAIBackend(cfg)
        summary = asyncio.run(
            run_items(
                store,
                items,
                TeacherConfig(reasoner=cfg, max_attempts=1, rationalize=False, concurrency=8, min_words=1),
                backend,
                None,
                run_id="replicas",
                show_progress=False,
            )
        )
    assert summary.failed == 0 and summary.accepted_items == len(items)  # error rate 0: every answer is right
    served = {r.url: r.served for r in backend._replicas}
    assert served[DEAD] == 0 and served[a] > 0 and served[b] > 0
    assert served[a] + served[b] == summary.calls  # every call landed on a live replica, once
