"""Opt-in (`pytest -m learn`, ~11 minutes on 2 CPU cores): a short `distill sft` of the tiny model lifts
validation accuracy on the sample covers above its untrained value (bench/README.md has the figures)."""

import pytest

pytestmark = pytest.mark.learn


def test_short_sft_lifts_validation_accuracy(tmp_path):
    from bench.learnability import main

    res = main(["--steps", "750", "--eval-steps", "250", "--work", str(tmp_path)])
    assert res["val_items"] == {"image2text": 200, "text2image": 201}
    assert res["untrained"]["all"] < 0.3
    assert res["trained_best"]["all"] >= res["untrained"]["all"] + 0.1
