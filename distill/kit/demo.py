"""`distill demo`: the whole pipeline on the embedded default, readable as a script.

sample data + tiny model (made once) -> teacher graph -> augment -> sft (letters and the teacher's rationales) ->
dpo -> predict -> eval, all on CPU, every artefact under the workdir. At the end: what the student learned,
untrained against trained, in accuracy and in its own words (does its own rationale end on the right letter?)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from distill.kit.sample_data import SampleDataConfig
from distill.kit.sample_teacher.serving import SampleTeacherConfig
from distill.logs import stdout

log = logging.getLogger(__name__)
OUTPUTS = ("traces.db", "traces.db-wal", "traces.db-shm", "augment", "sft", "dpo", "answers", "answers-untrained")
TASKS = ("image2text", "text2image")


class KitConfig(BaseModel):
    """A recipe's `kit:` section: the sample data and the sample-cover teacher of the embedded default."""

    model_config = ConfigDict(extra="forbid")

    sample_data: SampleDataConfig = Field(default_factory=SampleDataConfig)
    sample_teacher: SampleTeacherConfig = Field(default_factory=SampleTeacherConfig)


def pointed_at(recipe, url: str):
    """The recipe with every teacher agent that reaches a server sent to `url` (where the sample teacher runs)."""
    agents = {
        name: agent.model_copy(update={"base_url": url})
        for name in ("describer", "reasoner")
        if (agent := getattr(recipe.teacher, name)) is not None and agent.backend == "openai"
    }
    return recipe.model_copy(update={"teacher": recipe.teacher.model_copy(update=agents)})


def run_demo(config: str | Path, workdir: str | Path, overwrite: bool = False) -> dict:
    from distill.kit.sample_data import generate
    from distill.kit.sample_teacher.serving import serving
    from distill.kit.tiny_model import build_tiny_model
    from distill.pipeline import run_augment, run_dpo, run_eval, run_predict, run_sft, run_teacher
    from distill.predict import PredictConfig
    from distill.recipe import load_recipe

    workdir = Path(workdir)
    used = [workdir / name for name in OUTPUTS if (workdir / name).exists()]
    if used and not overwrite:
        raise FileExistsError(f"{workdir} holds an earlier demo's outputs: pass --overwrite to start again")
    for path in used:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    recipe = load_recipe(config, {"workdir": str(workdir)})
    kit = KitConfig.model_validate(recipe.kit or {})
    data_dir, model_dir = workdir / "data", workdir / "tiny-model"
    if not (data_dir / "dataset_info.json").exists():
        log.info("writing sample data to %s", data_dir)
        generate(data_dir, kit.sample_data)
    if not (model_dir / "config.json").exists():
        log.info("building the tiny model in %s", model_dir)
        build_tiny_model(model_dir, max_pixels=recipe.data.max_pixels)
    artefacts = {"data": str(data_dir), "tiny model": str(model_dir), "store": recipe.db}

    with serving(kit.sample_teacher) as url:
        log.info("sample-cover teacher (a stand-in for a VLM, valid on the sample covers only) at %s", url)
        summary = run_teacher(pointed_at(recipe, url))
    artefacts["teacher run"] = summary.run_id
    log.info(
        "teacher: %d accepted, %d rejected traces over %d items (%d failed)",
        summary.accepted,
        summary.rejected,
        summary.items,
        summary.failed,
    )

    aug = run_augment(recipe.db, workdir / "augment", recipe.augment)
    artefacts["augmented"] = str(workdir / "augment")
    log.info("augment: %d new training items %s, gold letters %s", aug["new_items"], aug["counts"], aug["gold_letters"])

    configs = Path(config).parent
    common = ["--db", recipe.db, "--max_pixels", str(recipe.data.max_pixels)]
    sft = run_sft(
        ["--config", str(configs / "sft-demo.yaml"), "--model_name_or_path", str(model_dir),
         "--output_dir", str(workdir / "sft"), *common]
    )  # fmt: skip
    artefacts["sft model"] = student = sft["final"]
    dpo = run_dpo(
        ["--config", str(configs / "dpo-demo.yaml"), "--model_name_or_path", sft["final"],
         "--output_dir", str(workdir / "dpo"), *common]
    )  # fmt: skip
    artefacts["dpo model"] = student = dpo.get("merged", dpo["final"])

    tests = [str(data_dir / f"{t}_test.json") for t in TASKS]
    gold = [data_dir / f"{t}_test_gold.json" for t in TASKS]
    reports, words = {}, {}
    for name, model in (("before", model_dir), ("after", student)):  # the untrained student, then the trained one
        answers = workdir / ("answers" if name == "after" else "answers-untrained")
        run_predict(str(model), tests, answers, PredictConfig(method="debias"), max_pixels=recipe.data.max_pixels)
        reports[name] = run_eval(answers, gold, answers)
        words[name] = in_its_own_words(model, data_dir, answers, recipe.data.max_pixels)
    artefacts["answers"] = str(workdir / "answers")
    artefacts["eval report"] = str(workdir / "answers" / "eval.md")
    for k, v in artefacts.items():
        log.info("%-12s %s", k, v)
    print_summary(reports, words)
    return artefacts


def in_its_own_words(model: str | Path, data_dir: Path, answers: Path, max_pixels: int) -> dict:
    """The student's captions of the test covers and its rationales for the test items (distill.kit.grounding)."""
    import json

    from distill.data.records import load_json
    from distill.kit.grounding import grounding, scored_letters

    items = []
    for task in TASKS:
        gold = {r["id"]: r["output"] for r in json.loads((data_dir / f"{task}_test_gold.json").read_text())}
        items += [it.model_copy(update={"gold": gold[it.id]}) for it in load_json(data_dir / f"{task}_test.json").items]
    return grounding(model, data_dir, scored_letters(answers), items, max_pixels)


def print_summary(reports: dict, words: dict) -> None:
    def line(label: str, before: float, after: float, note: str = "") -> None:
        stdout.print(f"  {label:<30} {before:6.1%} -> {after:6.1%}{note}", markup=False)

    stdout.print("\nThe demo student, untrained -> trained, on the held-out test items:", markup=False)
    for task in TASKS:
        b, a = (reports[n]["tasks"][task]["accuracy"] for n in ("before", "after"))
        line(f"{task} accuracy (debias)", b, a)
    b, a = (reports[n]["overall"]["accuracy"] for n in ("before", "after"))
    line("overall accuracy", b, a, f"   (chance 25%; {reports['after']['overall']['n']} items)")
    line("its rationale is right", words["before"]["rationale_correct"], words["after"]["rationale_correct"])
    line("its rationale = its letter", words["before"]["rationale_agrees"], words["after"]["rationale_agrees"])
    said = " ".join(words["after"]["examples"]["rationale"].split())
    stdout.print(f"  a rationale it wrote: {said[:200]!r}", markup=False)
