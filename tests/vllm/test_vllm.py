"""The vLLM paths with vLLM's real engine and server on the CPU, checked against the in-process scorer on the same
tiny model, prompts and images. Letter probabilities agree within 1e-4 (float32 on both sides; measured: ~1e-7)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.vllm.conftest import ENV, ROOT

MAX_PIXELS = 50176
TOLERANCE = 1e-4
TASKS = ("image2text", "text2image")


def _details(folder):
    return {
        t: {r["id"]: r for r in map(json.loads, (folder / f"{t}_details.jsonl").read_text().splitlines())}
        for t in TASKS
    }


@pytest.fixture(scope="module")
def tests(sample_dir):
    return [sample_dir / f"{t}_test.json" for t in TASKS]


@pytest.fixture(scope="module")
def reference(tiny32, tests, tmp_path_factory):
    """The in-process transformers backend (float32) on the same items: score and debias."""
    from distill.pipeline import run_predict
    from distill.predict import PredictConfig

    out = {}
    for method in ("score", "debias"):
        folder = tmp_path_factory.mktemp(f"hf-{method}")
        run_predict(
            str(tiny32),
            tests,
            folder,
            PredictConfig(method=method),
            max_pixels=MAX_PIXELS,
            show_progress=False,
            backend_options={"dtype": "float32"},
        )
        out[method] = _details(folder)
    return out


def _agree(got: dict, want: dict) -> float:
    assert {t: set(v) for t, v in got.items()} == {t: set(v) for t, v in want.items()}
    return max(
        abs(got[t][i]["probs"][L] - want[t][i]["probs"][L]) for t in TASKS for i in want[t] for L in want[t][i]["probs"]
    )


def test_predict_with_the_vllm_engine_matches_the_in_process_scores(vllm_python, tiny32, tests, reference, tmp_path):
    from distill.data.answers import read_answers
    from distill.data.records import load_json

    common = [
        "--model",
        tiny32,
        "--data",
        tests[0],
        "--data",
        tests[1],
        "--max-pixels",
        MAX_PIXELS,
        "--dtype",
        "float32",
    ]
    # (method, folder, flags): the last one with the default dtype, float32 on the CPU, so the same engine serves it
    runs = [
        ("score", "score", common),
        ("debias", "debias", common),
        ("score", "auto", [a for a in common if a not in ("--dtype", "float32")]),
    ]
    argv = []
    for method, folder, flags in runs:
        argv += [*(["---"] if argv else []), "predict", "--backend", "vllm", "--method", method]
        argv += ["--out", tmp_path / folder, *flags]
    res = subprocess.run(
        [str(vllm_python), str(ROOT / "tests/vllm/run_cli.py"), *map(str, argv)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stderr.count("starting the vLLM engine") == 1  # one engine for the three commands
    assert "starting the vLLM engine for" in res.stderr and "(dtype float32)" in res.stderr
    for method, folder, _ in runs:
        got = _details(tmp_path / folder)
        assert _agree(got, reference[method]) < TOLERANCE
        assert all(got[t][i]["letter"] == reference[method][t][i]["letter"] for t in TASKS for i in got[t])
        for task, path in zip(TASKS, tests):
            answers = read_answers(tmp_path / folder / f"{task}_answer.json")
            assert set(answers) == {it.id for it in load_json(path).items}
            probs = [r["probs"] for r in got[task].values()]
            assert all(abs(sum(p.values()) - 1) < 1e-5 for p in probs)
            assert len({tuple(round(v, 6) for v in p.values()) for p in probs}) > 1  # never one uniform answer


def test_predict_through_vllm_serve_two_tasks_one_event_loop(vllm_server, tiny32, tests, reference, tmp_path):
    """The OpenAI backend against `vllm serve`: both tasks in one call, letters scored exactly."""
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill.cli",
            "predict",
            "--backend",
            "openai",
            "--base-url",
            vllm_server,
            "--model",
            str(tiny32),
            "--scoring",
            "allowed_tokens",
            "--method",
            "debias",
            "--data",
            str(tests[0]),
            "--data",
            str(tests[1]),
            "--max-pixels",
            str(MAX_PIXELS),
            "--out",
            str(tmp_path / "served"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=ENV,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert _agree(_details(tmp_path / "served"), reference["debias"]) < TOLERANCE


def test_vllm_serve_as_the_teacher_of_the_graph(vllm_server, tiny32, sample_dir, tmp_path):
    """`distill graph` against `vllm serve`: the forced letter by structured choice, a consistency re-ask, every
    call recorded with the server's token counts, equal to our processor's for the same prompt."""
    from transformers import AutoProcessor

    from agents.reasoner import reason_request
    from distill.backends.transformers_backend import to_hf_messages
    from distill.data.images import load_image
    from store import open_store

    teacher = {
        "backend": "openai",
        "base_url": vllm_server,
        "model": str(tiny32),
        "structured": "choice",
        "max_pixels": MAX_PIXELS,
        "max_retries": 1,
    }
    recipe = {
        "db": str(tmp_path / "t.db"),
        "data": {"train": [str(sample_dir / f"{t}_train.json") for t in TASKS], "validation_fraction": 0.1},
        "teacher": {
            "reasoner": teacher,
            "max_attempts": 2,
            "consistency": True,
            "max_new_tokens": 16,
            "min_words": 1,
            "limit": 6,
            "concurrency": 6,
        },
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = subprocess.run(
        [sys.executable, "-m", "distill.cli", "graph", "-c", str(tmp_path / "r.yaml"), "--run-id", "vllm"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=ENV,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    store = open_store(tmp_path / "t.db")
    traces = store.traces(run_id="vllm")
    items = {it.key: it for it in store.items()}
    assert traces and all(t["answer"] in items[t["item_key"]].letters for t in traces)  # forced to an option
    calls = list(store.db.query("select * from calls where run_id = 'vllm' and agent = 'reasoner' and error is null"))
    processor = AutoProcessor.from_pretrained(tiny32)
    checked = 0
    for t in traces:
        if t["attempt"] or t["hinted"]:
            continue
        item = items[t["item_key"]]
        call = next(c for c in calls if c["id"] == t["call_id"])
        msgs, paths = to_hf_messages(reason_request(item, {}, max_tokens=16).messages)
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        enc = processor(text=[text], images=[load_image(p, MAX_PIXELS) for p in paths])
        assert call["prompt_tokens"] == len(enc["input_ids"][0])
        checked += 1
    assert checked >= 3
    rotated = [t for t in traces if t["consistency"]]  # accepted answers were re-asked with rotated options
    assert rotated and store.db.execute(
        "select count(*) from calls where run_id = 'vllm' and agent = 'critic'"
    ).fetchone()[0] >= len(rotated)


# `distill predict` with vLLM's engine given more memory than there is (a whole node's worth at start-up)
_GREEDY = """import sys
import distill.backends.vllm_backend as v
from distill.cli import main
kwargs = v.engine_kwargs
v.engine_kwargs = lambda config, on_cpu=None: kwargs(config, on_cpu) | {"gpu_memory_utilization": 1.0}
sys.argv = ["distill", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    "refusal,command,env",
    [
        # vLLM's CPU engine reserves a share of the node's memory at start-up when no KV cache size is given
        ("on startup", ["-c", _GREEDY], {k: v for k, v in ENV.items() if k != "VLLM_CPU_KVCACHE_SPACE"}),
        # a KV cache larger than the free memory
        ("on kv cache allocation", ["-m", "distill.cli"], ENV | {"VLLM_CPU_KVCACHE_SPACE": "100000"}),
    ],
)
def test_an_engine_short_of_memory_is_one_line_naming_the_setting(
    vllm_python, tiny32, tests, tmp_path, refusal, command, env
):
    res = subprocess.run(
        [str(vllm_python), *command, "predict", "--backend", "vllm", "--model", str(tiny32), "--data", str(tests[0])]
        + ["--max-pixels", str(MAX_PIXELS), "--out", str(tmp_path / "answers")],
        env=env | {"TMPDIR": str(tmp_path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 1
    output = res.stdout + res.stderr
    assert "Traceback" not in output and "ERROR" not in output  # the engine's processes' logs are held back
    [line] = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert "lack of memory" in line and refusal in line and "VLLM_CPU_KVCACHE_SPACE" in line
    log = line.rsplit("vLLM's output is in ", 1)[1]
    assert log.startswith(str(tmp_path)) and "Traceback" in Path(log).read_text()  # what was held back is kept
    assert not list(tmp_path.glob("answers/*_answer.json"))
