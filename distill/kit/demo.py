"""`distill demo`: the whole pipeline on the embedded default, readable as a script.

sample data + student (made once) -> teacher graph -> augment -> sft (letters and the teacher's rationales) -> dpo
-> predict -> eval, every artefact under the workdir. At the end: what the student learned, untrained, after SFT
and after DPO (what each training stage bought on this run), in accuracy and in its own words (does its own
rationale end on the right letter?).

Two plans, one script: on a CPU (configs/demo.yaml) a 2-layer student for a few minutes, which shows the pipeline
but not learning; on a GPU (configs/demo-gpu.yaml) a 4-layer student on a thousand items a task, trained to the
budget the ablation measured, beside a letters-only twin with the same seed and steps: the gain the teacher's
work buys, on held-out motifs."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from distill.errors import UserError
from distill.kit.sample_data import SampleDataConfig
from distill.kit.sample_teacher.serving import SampleTeacherConfig
from distill.logs import stdout
from distill.predict import Method
from distill.recipe import Recipe

log = logging.getLogger(__name__)
OUTPUTS = (
    "traces.db",
    "traces.db-wal",
    "traces.db-shm",
    "augment",
    "sft",
    "sft-letters",
    "dpo",
    "answers",
    "answers-sft",
    "answers-letters",
    "answers-untrained",
)
TASKS = ("image2text", "text2image")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GPU_COMMAND = "distill demo --gpu"
# What the GPU plan printed on one H200 (bench/README.md, "The demo on a GPU").
GPU_FIGURES = (
    "45.5 % for the twin against 100.0 % for the student taught by the teacher's rationales "
    "(400 held-out test items, 12 to 13 minutes; two runs, the same figures)"
)


class KitConfig(BaseModel):
    """A recipe's `kit:` section: the embedded default's sample data, sample-cover teacher, student and plan."""

    model_config = ConfigDict(extra="forbid")

    sample_data: SampleDataConfig = Field(default_factory=SampleDataConfig)
    sample_teacher: SampleTeacherConfig = Field(default_factory=SampleTeacherConfig)
    student: Literal["tiny", "small"] = Field("tiny", description="The random student's size (`distill tiny-model`).")
    sft: str = Field("sft-demo.yaml", description="The SFT recipe, beside the pipeline recipe.")
    dpo: str = Field("dpo-demo.yaml", description="The DPO recipe, beside the pipeline recipe.")
    letters_twin: bool = Field(
        False, description="Also train a letters-only student (same seed and steps) and compare it."
    )
    method: Method = Field("debias", description="How the students answer the test items.")


class KitRecipe(Recipe):
    """The demo's recipe: the pipeline recipe with its `kit:` section typed."""

    kit: KitConfig = Field(default_factory=KitConfig)


def pointed_at(recipe, url: str):
    """The recipe with every teacher agent that reaches a server sent to `url` (where the sample teacher runs)."""
    agents = {
        name: agent.model_copy(update={"base_url": url})
        for name in ("describer", "reasoner")
        if (agent := getattr(recipe.teacher, name)) is not None and agent.backend == "openai"
    }
    return recipe.model_copy(update={"teacher": recipe.teacher.model_copy(update=agents)})


def default_config(device: str) -> Path:
    """configs/demo-gpu.yaml where the demo trains on a GPU, else configs/demo.yaml."""
    return CONFIGS / ("demo-gpu.yaml" if on_gpu(device) else "demo.yaml")


def on_gpu(device: str) -> bool:
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def run_demo(config: str | Path | None, workdir: str | Path, overwrite: bool = False, device: str = "auto") -> dict:
    from distill.augment import require_embedder
    from distill.kit.sample_data import generate
    from distill.kit.tiny_model import build_tiny_model
    from distill.pipeline import run_dpo, run_sft
    from distill.recipe import load_recipe, training_settings
    from distill.train.metrics import read_metrics, validation_curve

    if device == "cpu":  # before torch first looks for a GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif device == "cuda" and not on_gpu("auto"):
        raise UserError(
            "--gpu: no CUDA device is visible here: `distill demo` runs the CPU plan (configs/demo.yaml); "
            "`distill demo --cpu --config configs/demo-gpu.yaml` runs the GPU plan on the CPU (hours)"
        )
    config = Path(config) if config else default_config(device)
    workdir = Path(workdir)
    used = [workdir / name for name in OUTPUTS if (workdir / name).exists()]
    if used and not overwrite:
        raise FileExistsError(f"{workdir} holds an earlier demo's outputs: pass --overwrite to start again")
    recipe = load_recipe(config, {"workdir": str(workdir)}, model=KitRecipe)
    require_embedder(recipe.augment)  # augmentation comes after the teacher: what it needs is checked first
    kit = recipe.kit
    # the training settings first: a recipe that cannot train fails before the teacher runs
    sft_settings = training_settings("sft", config.parent / kit.sft, pipeline=recipe)
    twin_settings = (
        training_settings("sft", config.parent / kit.sft, letters_only(workdir), pipeline=recipe)
        if kit.letters_twin
        else None
    )
    dpo_settings = training_settings("dpo", config.parent / kit.dpo, pipeline=recipe)
    cap = sft_settings.distill.max_pixels
    for path in used:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    data_dir, model_dir = workdir / "data", Path(sft_settings.model.model_name_or_path)
    if not (data_dir / "dataset_info.json").exists():
        log.info("writing sample data to %s", data_dir)
        generate(data_dir, kit.sample_data)
    if not (model_dir / "config.json").exists():
        log.info("building the %s student in %s", kit.student, model_dir)
        build_tiny_model(model_dir, size=kit.student, max_pixels=cap)
    artefacts = {"data": str(data_dir), "student": str(model_dir), "store": recipe.db}

    twin = twin_beside(recipe, twin_settings) if twin_settings is not None and beside(twin_settings) else None
    try:
        artefacts |= teach_and_augment(recipe, kit, workdir)
        letters = run_sft(twin_settings) if twin_settings is not None and twin is None else None
        if twin is not None:
            twin.check()  # a twin that has already failed stops the demo before the other student trains
        sft = run_sft(sft_settings)
        if twin is not None:
            letters = twin.result()
            log.info("letters-only twin done: %s (best step %s)", letters["final"], letters["best_step"])
    finally:
        if twin is not None:
            twin.stop()

    students = {"untrained": str(model_dir)}
    if letters is not None:
        students["letters only"] = artefacts["letters-only model"] = letters["final"]
    students["sft"] = artefacts["sft model"] = sft["final"]
    dpo = run_dpo(dpo_settings)
    students["sft + dpo"] = artefacts["dpo model"] = dpo.get("merged", dpo["final"])

    reports, words = {}, {}
    folders = {"untrained": "answers-untrained", "letters only": "answers-letters", "sft": "answers-sft"}
    for name, model in students.items():
        answers = workdir / folders.get(name, "answers")
        reports[name], words[name] = answer_tests(model, data_dir, answers, kit.method, cap)
    artefacts["answers"] = str(workdir / "answers")
    artefacts["eval report"] = str(workdir / "answers" / "eval.md")
    for k, v in artefacts.items():
        log.info("%-18s %s", k, v)
    curves = {
        name: validation_curve(read_metrics(Path(s.trainer.output_dir) / "metrics.jsonl"))
        for name, s in (("letters only", twin_settings), ("sft", sft_settings), ("dpo", dpo_settings))
        if s
    }
    print_summary(reports, words, kit.method, curves, gpu=twin_settings is not None)
    return artefacts


def teach_and_augment(recipe, kit, workdir: Path) -> dict:
    """The teacher graph against the sample-cover teacher, then augmentation; what they made, for the summary."""
    from distill.kit.sample_teacher.serving import serving
    from distill.pipeline import run_augment, run_teacher

    with serving(kit.sample_teacher) as url:
        log.info("sample-cover teacher (a stand-in for a VLM, valid on the sample covers only) at %s", url)
        summary = run_teacher(pointed_at(recipe, url))
    log.info(
        "teacher: %d accepted, %d rejected traces over %d items (%d failed)",
        summary.accepted,
        summary.rejected,
        summary.items,
        summary.failed,
    )
    aug = run_augment(recipe.db, workdir / "augment", recipe.augment)
    log.info("augment: %d new training items %s, gold letters %s", aug["new_items"], aug["counts"], aug["gold_letters"])
    return {"teacher run": summary.run_id, "augmented": str(workdir / "augment")}


def beside(settings) -> bool:
    """Whether the twin trains in a process of its own: on a GPU, where the card has room for two small runs (on a
    CPU the two would share the same cores)."""
    return not settings.trainer.use_cpu


def twin_beside(recipe, settings):
    """On a GPU the letters-only twin trains in a process of its own from the start: it needs the store's items and
    their letters, not the teacher's output, so it trains while the teacher graph and the other student work. Its
    progress bar is off (the teacher's is on screen); its result is logged when it is collected."""
    from distill.kit.beside import Beside
    from distill.pipeline import run_sft, store_recipe_data

    store_recipe_data(recipe).close()
    settings.trainer.disable_tqdm = True
    log.info("letters-only twin: training beside the teacher graph (%s)", settings.trainer.output_dir)
    return Beside(run_sft, settings, name="letters-only twin")


def letters_only(workdir: Path) -> dict:
    """The twin's settings over the SFT recipe: the answer task alone, each item's letter, in its own folder."""
    return {
        "reason_weight": 0.0,
        "describe_weight": 0.0,
        "task_loss": "task",
        "output_dir": str(workdir / "sft-letters"),
    }


def answer_tests(model: str, data_dir: Path, answers: Path, method: str, cap: int) -> tuple[dict, dict]:
    """A student's answers to the test items, scored, and what it says in its own words."""
    from distill.pipeline import run_eval, run_predict
    from distill.predict import PredictConfig

    tests = [str(data_dir / f"{t}_test.json") for t in TASKS]
    gold = [data_dir / f"{t}_test_gold.json" for t in TASKS]
    run_predict(str(model), tests, answers, PredictConfig(method=method), max_pixels=cap)
    return run_eval(answers, gold, answers), in_its_own_words(model, data_dir, answers, cap)


def in_its_own_words(model: str | Path, data_dir: Path, answers: Path, max_pixels: int) -> dict:
    """The student's captions of the test covers and its rationales for the test items (distill.kit.grounding)."""
    from distill.data.records import load_json
    from distill.kit.grounding import grounding, scored_letters

    items = []
    for task in TASKS:
        gold = {r["id"]: r["output"] for r in json.loads((data_dir / f"{task}_test_gold.json").read_text())}
        items += [it.model_copy(update={"gold": gold[it.id]}) for it in load_json(data_dir / f"{task}_test.json").items]
    items = items[:: max(1, len(items) // 48)][:48]  # the first 48 of an even spread over both tasks
    return grounding(model, data_dir, scored_letters(answers), items, max_pixels)


def print_summary(reports: dict, words: dict, method: str, curves: dict, gpu: bool) -> None:
    names = list(reports)

    def line(label: str, values: list[float], note: str = "") -> None:
        cells = " -> ".join(f"{v:6.1%}" for v in values)
        stdout.print(f"  {label:<30} {cells}{note}", markup=False)

    n = reports[names[-1]]["overall"]["n"]
    stdout.print(f"\nThe demo's students on the held-out test items ({' -> '.join(names)}):", markup=False)
    for task in TASKS:
        line(f"{task} accuracy ({method})", [reports[k]["tasks"][task]["accuracy"] for k in names])
    line("overall accuracy", [reports[k]["overall"]["accuracy"] for k in names], f"   (chance 25%; {n} items)")
    line("its rationale is right", [words[k]["rationale_correct"] for k in names])
    line("its rationale = its letter", [words[k]["rationale_agrees"] for k in names])
    for name, points in curves.items():
        shown = "  ".join(f"{step}: {acc:.0%}" for step, acc in points)
        stdout.print(f"  validation accuracy, {name:<13} {shown}", markup=False)
    said = " ".join(words[names[-1]]["examples"]["rationale"].split())
    stdout.print(f"  a rationale it wrote: {said[:200]!r}", markup=False)
    if not gpu:
        stdout.print(
            f"\nOn a GPU, `{GPU_COMMAND}` trains a 4-layer student on 1,000 items a task beside a letters-only twin "
            f"with the same seed and steps; on one H200 it printed {GPU_FIGURES}.",
            markup=False,
        )
