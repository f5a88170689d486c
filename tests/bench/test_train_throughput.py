import warnings
from functools import partial

import pytest
import torch  # noqa: F401 (imported first, as in the bench: its import adds warning filters of its own)

from bench import train_throughput


def passes(name: str, batch: int) -> tuple[int, int]:
    return train_throughput.Variant.parse(name).passes(batch)


def test_micro_batches_of_one_keep_the_examples_an_optimizer_step():
    assert passes("nockpt-varlen-nocast-liger-mb1", 4) == (1, 4)
    assert passes("nockpt-varlen-nocast-liger-mb1-drop", 2) == (1, 2)
    assert passes("nockpt-varlen-nocast-liger-drop", 4) == (4, 1)


def test_a_variant_name_is_read_once_and_a_misspelt_one_is_refused_before_any_model_is_built(capsys):
    v = train_throughput.Variant.parse("every2-liger-b2x")
    assert v.checkpointing == (True, {"every_n_layers": 2}) and v.batch_factor == 2
    assert "liger" in v and "varlen" not in v and v.patches_liger
    assert train_throughput.Variant.parse("mlpckpt-prepatch").patches_liger
    assert not train_throughput.Variant.parse("nockpt-varlen").patches_liger
    assert train_throughput.bad_variant(["naive", "naive-text-grads", "mlpckpt-varlen-nocast-liger"]) is None
    assert train_throughput.bad_variant(["naive", "mlpckpt-varlen-ligr"]) == (
        f"variant mlpckpt-varlen-ligr: unknown option ligr (options: {', '.join(train_throughput.OPTIONS)})"
    )
    assert "'mlpckt' is not one of naive" in train_throughput.bad_variant(["mlpckt-liger"])
    for argv in (["--variants", "nockpt-b3x"], ["--dpo-variants", "naive-text-grads"]):
        with pytest.raises(SystemExit):
            train_throughput.main(["--model", "tiny", "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert "variant nockpt-b3x: unknown option b3x" in err
    assert "variant naive-text-grads is SFT's alone" in err


def test_each_place_the_host_waited_is_counted_and_warnings_are_as_before_after():
    def waits():
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)

    before = warnings.showwarning, warnings.filters[:]
    with train_throughput.SyncCounter() as counter:
        for _ in range(3):
            waits()
        waits()  # the same function, another line that called it
    assert (warnings.showwarning, warnings.filters) == before
    counts = sorted(r["count"] for r in counter.report())
    assert counts == [1, 3]
    # each place named by the call that waited, then its caller
    assert all(" waits < " in r["where"] and "test_each_place" in r["where"] for r in counter.report())


@pytest.mark.slow
def test_compiled_decoder_layers_train_as_the_eager_ones(tmp_path):
    """`-compile` on the tiny model, with and without checkpointing: the same losses step by step as eager layers."""
    from bench.workloads import build_model

    exs = train_throughput.examples("image2text", 8, tmp_path, seed=2)
    losses = {}
    for variant in ("ckpt", "ckpt-compile", "nockpt-compile"):
        model, processor = build_model("tiny", "cpu")
        result = train_throughput.ours("sft", model, processor, exs, 2, 2, 1, "cpu", variant, tmp_path)
        losses[variant] = result["loss"]
        compiled = [layer for layer in model.model.language_model.layers if layer._compiled_call_impl is not None]
        assert len(compiled) == (len(model.model.language_model.layers) if "compile" in variant else 0)
    assert losses["ckpt-compile"] == pytest.approx(losses["ckpt"], rel=1e-4)
    assert losses["nockpt-compile"] == pytest.approx(losses["ckpt"], rel=1e-4)


def test_a_compiled_variant_after_liger_is_refused_before_any_model_is_built(capsys):
    def refused(variants):
        bad = train_throughput.bad_variant(variants)
        return bad and bad.split(":")[0].removeprefix("variant ")

    assert refused(["naive", "ckpt-compile", "ckpt-liger"]) is None
    assert refused(["ckpt-liger-compile"]) == "ckpt-liger-compile"
    # Liger patches the process: a later variant without -liger runs with its kernels too
    assert refused(["ckpt-liger", "nockpt-compile"]) == "nockpt-compile"
    assert refused(["ckpt-prepatch", "nockpt-compile"]) == "nockpt-compile"
    with pytest.raises(SystemExit):
        train_throughput.main(
            ["--model", "tiny", "--device", "cpu", "--variants", "ckpt-liger", "--dpo-variants", "ckpt-compile"]
        )
    assert "variant ckpt-compile: -compile cannot run with Liger's kernels" in capsys.readouterr().err
    # the SFT list runs again for the second task, after the first task's Liger variant
    with pytest.raises(SystemExit):
        train_throughput.main(["--model", "tiny", "--device", "cpu", "--variants", "ckpt-compile,ckpt-liger"])
    assert "variant ckpt-compile: -compile" in capsys.readouterr().err


def test_a_variant_listed_again_keeps_each_runs_figures():
    assert train_throughput.run_keys(["naive", "a", "b", "a", "a"]) == ["naive", "a", "b", "a#2", "a#3"]


def test_the_run_order_is_the_one_main_runs():
    def order(*argv):
        return train_throughput.run_order(train_throughput.make_parser().parse_args(list(argv)))

    assert order("--variants", "a,b", "--profile", "p", "--syncs", "s", "--dpo-variants", "d") == [
        *("a", "b", "p", "s"),  # image2text, then its profile and sync count
        *("a", "b"),  # text2image
        "d",
    ]
    assert order("--variants", "a", "--tasks", "text2image", "--profile", "p", "--skip-dpo") == ["a"]


def test_triton_kernels_are_counted_where_its_cache_is(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "none"))
    assert train_throughput.triton_cached() is None
    (tmp_path / "none" / "a1b2").mkdir(parents=True)
    assert train_throughput.triton_cached() == 1
    monkeypatch.delenv("TRITON_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))  # Triton's default: ~/.triton/cache
    assert train_throughput.triton_cached() is None
    (tmp_path / ".triton" / "cache" / "k").mkdir(parents=True)
    assert train_throughput.triton_cached() == 1


def test_a_runs_pace_is_read_without_the_steps_that_compiled_a_kernel():
    # five steps: seconds and tokens from the second on; the cache count as each ended, the first too
    step_s, tokens = [1.0, 0.5, 2.0, 0.5], [500, 500, 500, 500]
    cached = [10, 12, 12, 13, 13]  # the second and fourth steps compiled
    pace = train_throughput.without_compiles(step_s, tokens, cached, timed=3)  # the last three steps timed
    assert pace == {"compiling_steps": 1, "tokens_per_s_without_compiles": 1000.0}
    assert train_throughput.without_compiles(step_s, tokens, cached, timed=4)["compiling_steps"] == 2
    assert train_throughput.without_compiles([2.0], [500], [1, 2], timed=1) == {
        "compiling_steps": 1,
        "tokens_per_s_without_compiles": None,
    }


def count(counts: dict, part: str, *_):
    counts[part] += 1


def passes_counted(model) -> dict:
    """Forward passes through the first decoder layer's MLP and attention, counted as training runs."""
    calls = {"mlp": 0, "attention": 0}
    layer = model.model.language_model.layers[0]
    for part, module in (("mlp", layer.mlp.gate_proj), ("attention", layer.self_attn.q_proj)):
        module.register_forward_hook(partial(count, calls, part))
    return calls


@pytest.mark.slow
def test_mlp_checkpointing_recomputes_the_mlps_alone_and_trains_as_without(tmp_path, monkeypatch):
    """`mlpckpt` on the tiny model: each MLP runs again in the backward pass, attention does not, and the losses are
    those of the same run without checkpointing. Each step's Triton cache count is kept beside its time."""
    from bench.workloads import build_model

    cache = tmp_path / "triton"
    for name in ("k1", "k2"):
        (cache / name).mkdir(parents=True)
    monkeypatch.setenv("TRITON_CACHE_DIR", str(cache))

    exs = train_throughput.examples("image2text", 8, tmp_path, seed=2)
    losses, calls = {}, {}
    for variant in ("nockpt", "mlpckpt"):
        model, processor = build_model("tiny", "cpu")
        calls[variant] = passes_counted(model)
        result = train_throughput.ours("sft", model, processor, exs, 2, 2, 1, "cpu", variant, tmp_path)
        losses[variant] = result["loss"]
        assert result["triton_cached_each"] == [2] * len(result["step_s_each"]) == [2, 2]
        assert len(result["tokens_each"]) == 2 and all(n > 0 for n in result["tokens_each"])
        assert result["compiling_steps"] == 0  # the cache did not grow: every timed step counts
        assert result["tokens_per_s_without_compiles"] == pytest.approx(
            sum(result["tokens_each"]) / sum(result["step_s_each"])
        )
        # the two timed steps' tokens: those the run's tokens/s counts
        assert sum(result["tokens_each"]) == pytest.approx(result["tokens_per_s"] * result["step_s"] * 2)
        assert result.get("mlps_checkpointed", 0) == (
            len(model.model.language_model.layers) if variant == "mlpckpt" else 0
        )
    assert calls["nockpt"] == {"mlp": 3, "attention": 3}  # one pass a step, three steps
    assert calls["mlpckpt"] == {"mlp": 6, "attention": 3}
    assert losses["mlpckpt"] == pytest.approx(losses["nockpt"], rel=1e-5)
