"""`distill demo`: the whole pipeline on the embedded default, readable as a script.

sample data + tiny model (made once) -> teacher graph -> augment -> sft -> dpo -> predict -> eval, all on CPU,
every artefact under the workdir."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from distill.logs import stdout

log = logging.getLogger(__name__)
OUTPUTS = ("traces.db", "traces.db-wal", "traces.db-shm", "augment", "sft", "dpo", "answers", "answers-untrained")


def run_demo(config: str | Path, workdir: str | Path, overwrite: bool = False) -> dict:
    from distill.data.sample import generate
    from distill.pipeline import run_augment, run_eval, run_predict, run_teacher
    from distill.predict import PredictConfig
    from distill.recipe import load_recipe
    from distill.sample_teacher.serving import SampleTeacherConfig, serving
    from distill.tiny_model import build_tiny_model
    from distill.train.dpo import main as dpo_main
    from distill.train.sft import main as sft_main

    workdir = Path(workdir)
    used = [workdir / name for name in OUTPUTS if (workdir / name).exists()]
    if used and not overwrite:
        raise FileExistsError(f"{workdir} holds an earlier demo's outputs: pass --overwrite to start again")
    for path in used:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    recipe = load_recipe(config, {"workdir": str(workdir)})
    data_dir, model_dir = workdir / "data", workdir / "tiny-model"
    if not (data_dir / "dataset_info.json").exists():
        log.info("writing sample data to %s", data_dir)
        generate(data_dir)
    if not (model_dir / "config.json").exists():
        log.info("building the tiny model in %s", model_dir)
        build_tiny_model(model_dir, text={"initializer_range": 0.2})  # leaves the chance plateau (bench/README.md)
    artefacts = {"data": str(data_dir), "tiny model": str(model_dir), "store": recipe.db}

    with serving(recipe.sample_teacher or SampleTeacherConfig()) as url:
        log.info("sample-cover teacher (a stand-in for a VLM, valid on the sample covers only) at %s", url)
        summary = run_teacher(recipe)
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
    sft = sft_main(
        [
            "--config",
            str(configs / "sft-demo.yaml"),
            "--model_name_or_path",
            str(model_dir),
            "--output_dir",
            str(workdir / "sft"),
            *common,
        ]
    )
    artefacts["sft model"] = student = sft["final"]
    try:
        dpo = dpo_main(
            [
                "--config",
                str(configs / "dpo-demo.yaml"),
                "--model_name_or_path",
                sft["final"],
                "--output_dir",
                str(workdir / "dpo"),
                *common,
            ]
        )
        artefacts["dpo model"] = student = dpo.get("merged", dpo["final"])
    except ValueError as exc:  # no item had both an accepted and a wrong-answer rationale
        log.warning("DPO skipped: %s", exc)

    tests = [str(data_dir / f"{t}_test.json") for t in ("image2text", "text2image")]
    gold = [data_dir / f"{t}_test_gold.json" for t in ("image2text", "text2image")]
    reports = {}
    for name, model in (("before", model_dir), ("after", student)):  # the untrained student, then the trained one
        answers = workdir / ("answers" if name == "after" else "answers-untrained")
        run_predict(str(model), tests, answers, PredictConfig(method="debias"), max_pixels=recipe.data.max_pixels)
        reports[name] = run_eval(answers, gold, answers)
    artefacts["answers"] = str(workdir / "answers")
    artefacts["eval report"] = str(workdir / "answers" / "eval.md")
    for k, v in artefacts.items():
        log.info("%-12s %s", k, v)
    stdout.print("\nTest accuracy of the demo student (debias), untrained -> trained:", markup=False)
    for task in ("image2text", "text2image"):
        b, a = (reports[n]["tasks"][task]["accuracy"] for n in ("before", "after"))
        stdout.print(f"  {task:<11} {b:6.1%} -> {a:6.1%}", markup=False)
    b, a = (reports[n]["overall"]["accuracy"] for n in ("before", "after"))
    stdout.print(
        f"  {'overall':<11} {b:6.1%} -> {a:6.1%}   (chance: 25%; {reports['after']['overall']['n']} test items)",
        markup=False,
    )
    return artefacts
