"""The ablation harness: rows, the jobs each row needs and their order, the guard on a failed teacher, and the
tables over per-(draw, seed) results files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import ablation


def test_rows_name_a_model_and_a_method():
    row = ablation.parse_row("B+dpo:debias")
    assert (row.base, row.extra, row.method, row.model, row.sft, str(row)) == (
        "B",
        "dpo",
        "debias",
        "B+dpo",
        "B",
        "B+dpo:debias",
    )
    assert str(ablation.parse_row("A")) == "A" and ablation.parse_row("B+aug").sft == "B+aug"
    with pytest.raises(SystemExit, match="unknown row"):
        ablation.parse_row("B:vote")


def test_each_model_trains_once_and_predictions_wait_for_their_model(tmp_path):
    args = ablation.make_parser().parse_args(["train", "--work", str(tmp_path)])
    rows = [ablation.parse_row(r) for r in ["A", "B", "B+dpo", "B:cot", "B+dpo:debias"]]
    jobs = {j.name: j for j in ablation.jobs_for(args, tmp_path, [0, 1], rows)}
    for s in (0, 1):
        assert {f"sft-A-s{s}", f"sft-B-s{s}", f"dpo-B-s{s}"} <= set(jobs)
        assert jobs[f"dpo-B-s{s}"].after == [f"sft-B-s{s}"]  # DPO from the plain row's best checkpoint
        assert jobs[f"predict-B+dpo-debias-s{s}"].after == [f"dpo-B-s{s}"]
        assert jobs[f"predict-B-cot-s{s}"].after == [f"sft-B-s{s}"]
    sft = jobs["sft-B-s1"].cmd
    assert sft[sft.index("--early_stopping_patience") + 1] == "4" and sft[sft.index("--max_steps") + 1] == "2500"
    assert sft[sft.index("--seed") + 1] == "1" and "--reason_weight" in sft
    dpo = jobs["dpo-B-s0"].cmd
    assert dpo[dpo.index("--config") + 1].endswith("configs/dpo-demo.yaml")  # the shipped recipe
    assert len([j for j in jobs if j.startswith("sft-")]) == 4


def test_a_job_whose_input_failed_is_skipped_and_the_stage_fails(tmp_path, monkeypatch):
    args = ablation.make_parser().parse_args(["train", "--work", str(tmp_path), "--parallel", "2"])
    jobs = [
        ablation.Job("bad", ["--no-such-command"]),
        ablation.Job("after-bad", ["--version"], after=["bad"]),
    ]
    with pytest.raises(SystemExit, match=r"jobs failed: \['after-bad', 'bad'\]|jobs failed: \['bad', 'after-bad'\]"):
        ablation.run_jobs(jobs, args, tmp_path)
    assert (tmp_path / "logs" / "bad.log").exists() and not (tmp_path / "logs" / "after-bad.log").exists()
    assert ablation.state_of(tmp_path, "bad") == "failed" and ablation.state_of(tmp_path, "after-bad") is None


def test_times_kept_by_another_train_on_the_same_work_dir_while_a_job_ran_are_kept(tmp_path, monkeypatch):
    args = ablation.make_parser().parse_args(["train", "--work", str(tmp_path)])
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"ok": 2.0}))
    popen = ablation.subprocess.Popen

    def another_train_finishes_a_job_meanwhile(*a, **k):
        times.write_text(json.dumps(json.loads(times.read_text()) | {"sft-A-s2": 60.0}))
        return popen(*a, **k)

    monkeypatch.setattr(ablation.subprocess, "Popen", another_train_finishes_a_job_meanwhile)
    ablation.run_jobs([ablation.Job("ok", ["--help"])], args, tmp_path)
    kept = json.loads(times.read_text())
    assert kept["sft-A-s2"] == 60.0 and kept["ok"] > 2.0  # this job's time adds to what it had


def test_a_draw_whose_teacher_failed_stops_with_the_teachers_error():
    failed = SimpleNamespace(
        failed=2000, items=2000, errors=["APIConnectionError: Connection refused (127.0.0.1:8765)"]
    )
    with pytest.raises(SystemExit, match="failed 2000 of 2000 item.*Connection refused"):
        ablation.require_teacher(failed)
    ablation.require_teacher(SimpleNamespace(failed=0, items=2000, errors=[]))


def shard(tmp_path, draw, seed, a, b, curve_a, curve_b, stages=None, settings=None):
    runs = {
        "A": {"test": {"image2text": a, "text2image": a, "overall": a}, "curve": curve_a, "cost": cost()},
        "B": {"test": {"image2text": b, "text2image": b, "overall": b}, "curve": curve_b, "cost": cost()},
    }
    for run in runs.values():
        best = max(run["curve"], key=lambda p: (p[1], -p[0]))
        run |= {"best_step": best[0], "best_val": best[1], "last_step": run["curve"][-1][0]}
    for name, acc in (stages or {}).items():
        runs[name] = {"test": {"image2text": acc, "text2image": acc, "overall": acc}, "cost": cost(4)}
    settings = settings or {"steps": 2500, "patience": 2}
    path = tmp_path / f"ablation-{ablation.budget_tag(**settings)}-d{draw}-s{seed}-small.json"
    path.write_text(json.dumps({"data_seed": draw, "student_seed": seed, "runs": runs, "settings": settings}))
    return str(path)


def cost(prefills=1):
    return {"seconds_per_item": 0.01, "prefills_per_item": prefills, "generated_tokens_per_item": 0}


def test_the_tables_pair_seeds_and_say_when_b_reaches_as_plateau(tmp_path):
    files = [
        shard(tmp_path, 1, 0, 0.60, 0.90, [(250, 0.3), (500, 0.5), (750, 0.62), (1000, 0.6)], [(250, 0.4), (500, 0.7)]),
        shard(tmp_path, 1, 1, 0.70, 0.65, [(250, 0.5), (500, 0.7)], [(250, 0.3), (500, 0.6)], {"B:debias": 0.7}),
    ]
    out = ablation.table(files)
    plateau, pairs, stages = out["markdown"].split("\n\n")
    assert "| 1 | A | **65.0 ± 7.1** |" in plateau and "| 1 | B | **77.5 ± 17.7** |" in plateau
    assert (
        "| 1 | 0 | 0.001 | 60.0 | 90.0 | +30.0 | 62.0 % from 750 | 500 | 0.67 |" in pairs
    )  # B at A's best, 2/3 the steps
    assert "| 1 | 1 | 0.001 | 70.0 | 65.0 | -5.0 | 70.0 % from 500 | never | – |" in pairs
    assert "| 1 | B:debias | 70.0 ± 0.0 |" in stages and "4.00" in stages and "| 70.0 |" in stages
    assert out["draws"]["1"]["B"] == [0.9, 0.65]


def test_steps_are_counted_to_the_first_evaluation_within_a_point_of_as_best(tmp_path):
    # A is at 91 % from step 500 and creeps to 92 % at 1,000: B, at 91 % only by 750, took longer, not 0.75 of A's
    flat = [(250, 0.5), (500, 0.91), (750, 0.915), (1000, 0.92)]
    files = [shard(tmp_path, 1, 0, 0.90, 0.93, flat, [(250, 0.6), (500, 0.7), (750, 0.95)])]
    pairs = ablation.table(files)["markdown"].split("\n\n")[1]
    assert "| 1 | 0 | 0.001 | 90.0 | 93.0 | +3.0 | 92.0 % from 500 | 750 | 1.50 |" in pairs


def test_a_fixed_budget_study_is_its_own_row_beside_the_same_draw_at_plateau(tmp_path):
    curve = [(250, 0.5), (500, 0.7)]
    files = [
        shard(tmp_path, 1, 0, 0.60, 0.99, curve, curve),
        shard(tmp_path, 1, 0, 0.40, 0.80, curve, curve, {"B+dpo": 0.85}, {"steps": 1000, "patience": 0}),
    ]
    names = sorted(Path(f).name for f in files)
    assert names == ["ablation-plateau-d1-s0-small.json", "ablation-steps1000-d1-s0-small.json"]
    out = ablation.table(files)
    plateau, pairs, stages = out["markdown"].split("\n\n")
    assert "| 1 | B | **99.0 ± 0.0** |" in plateau and "| 1 @ 1000 steps | B | **80.0 ± 0.0** |" in plateau
    assert "| 1 @ 1000 steps | 0 | 0.001 | 40.0 | 80.0 | +40.0 |" in pairs
    assert "| 1 @ 1000 steps | B+dpo | 85.0 ± 0.0 |" in stages


def test_a_study_at_another_learning_rate_is_its_own_row_and_b_meets_a_at_its_best_rate(tmp_path):
    slow, fast = [(250, 0.3), (2500, 0.55)], [(250, 0.3), (1000, 0.3)]
    lower = {"steps": 2500, "patience": 4, "lr": 3e-4}
    files = [
        shard(tmp_path, 2, 0, 0.30, 0.99, fast, [(250, 0.4), (500, 0.5), (750, 0.99)]),
        shard(tmp_path, 2, 1, 0.35, 0.97, fast, [(250, 0.4), (500, 0.97)]),
        shard(tmp_path, 2, 0, 0.50, 0.90, slow, slow, settings=lower),  # A better at its own rate
        shard(tmp_path, 2, 1, 0.60, 0.90, slow, slow, settings=lower),
    ]
    assert sorted(Path(f).name for f in files)[:2] == ["ablation-plateau-d2-s0-small.json",
                                                      "ablation-plateau-d2-s1-small.json"]  # fmt: skip
    assert Path(files[2]).name == "ablation-plateau-lr0.0003-d2-s0-small.json"
    plateau, pairs, _ = ablation.table(files)["markdown"].split("\n\n")
    assert "| 2 | A | **32.5 ± 3.5** |" in plateau and "| 2 @ lr 0.0003 | A | **55.0 ± 7.1** |" in plateau
    # B (at its rate) against A at the rate where A did best on validation, seed by seed
    assert "| 2 | 0 | 0.0003 | 50.0 | 99.0 | +49.0 | 55.0 % from 2500 | 750 | 0.30 |" in pairs
    assert "| 2 | 1 | 0.0003 | 60.0 | 97.0 | +37.0 | 55.0 % from 2500 | 500 | 0.20 |" in pairs
    assert "| 2 | 0 | 0.001 |" not in pairs


def test_b_at_letters_alones_rate_is_paired_with_it_at_that_rate_and_its_seeds_are_named(tmp_path):
    lower = {"steps": 4000, "patience": 4, "lr": 3e-4}
    slow, fast = [(250, 0.3), (2500, 0.55), (8000, 0.95)], [(250, 0.3), (1000, 0.3)]
    (tmp_path / "b").mkdir()
    files = [
        shard(tmp_path, 2, 1, 0.30, 0.99, fast, [(250, 0.4), (2000, 0.99)]),
        shard(tmp_path, 2, 1, 0.94, 0.90, slow, slow, settings=lower),  # A at 3e-4 (its B is not this study's)
        shard(tmp_path / "b", 2, 1, 0.10, 0.97, fast, [(250, 0.3), (3000, 0.9), (3500, 0.96)], settings=lower),
    ]
    data = json.loads(Path(files[2]).read_text())
    del data["runs"]["A"]  # B alone at 3e-4, in a folder of its own (the same file name as A's)
    Path(files[2]).write_text(json.dumps(data))
    del (data := json.loads(Path(files[1]).read_text()))["runs"]["B"]
    Path(files[1]).write_text(json.dumps(data))
    plateau, pairs, _ = ablation.table(files)["markdown"].split("\n\n")
    assert "| 2 @ lr 0.0003 | B | **97.0 ± 0.0** | 97.0 ± 0.0 | 97.0 ± 0.0 | s1 97.0 |" in plateau
    assert "| 2 | 1 | 0.0003 | 94.0 | 99.0 | +5.0 | 95.0 % from 8000 | 2000 | 0.25 |" in pairs  # B at 1e-3
    assert "| 2 @ lr 0.0003 | 1 | 0.0003 | 94.0 | 97.0 | +3.0 | 95.0 % from 8000 | 3500 | 0.44 |" in pairs  # one rate


def test_a_run_in_two_files_is_refused_and_a_file_named_twice_counts_once(tmp_path):
    curve = [(250, 0.5), (500, 0.7)]
    first = shard(tmp_path, 2, 1, 0.60, 0.99, curve, curve)
    (tmp_path / "copy").mkdir()
    again = shard(tmp_path / "copy", 2, 1, 0.60, 0.99, curve, curve)
    plateau, _, _ = ablation.table([first, first])["markdown"].split("\n\n")
    assert "| 2 | A | **60.0 ± 0.0** | 60.0 ± 0.0 | 60.0 ± 0.0 | s1 60.0 |" in plateau
    with pytest.raises(SystemExit, match=r"copy/.*seed 1, row A is in .*ablation-plateau-d2-s1-small.json too"):
        ablation.table([first, again])


def test_a_file_that_is_not_a_results_file_is_refused_by_name(tmp_path):
    good = shard(tmp_path, 1, 0, 0.6, 0.9, [(250, 0.6)], [(250, 0.9)])
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"sft-A-s0": 120.0}))
    with pytest.raises(
        SystemExit, match=r"times.json: not a results file of `results` \(no data_seed, student_seed, runs\)"
    ):
        ablation.table([good, str(times)])
    cut = tmp_path / "cut.json"
    cut.write_text('{"data_seed": 1, "stu')
    with pytest.raises(SystemExit, match=r"cut.json: not a readable results file"):
        ablation.table([good, str(cut)])


def test_b_with_no_letters_alone_at_any_rate_says_so(tmp_path):
    data = json.loads(Path(f := shard(tmp_path, 2, 0, 0.60, 0.99, [(250, 0.5)], [(250, 0.9)])).read_text())
    del data["runs"]["A"]
    Path(f).write_text(json.dumps(data))
    _, pairs, _ = ablation.table([f])["markdown"].split("\n\n")
    assert "| 2 | 0 | – | – | 99.0 | – | not run at this rate | – | – |" in pairs


def test_a_rate_tried_on_one_seed_is_chosen_on_that_seed_and_seeds_without_it_say_so(tmp_path):
    lower = {"steps": 2500, "patience": 4, "lr": 3e-4}
    b_curve = [(250, 0.4), (500, 0.99)]
    files = [
        shard(tmp_path, 2, 0, 0.30, 0.99, [(250, 0.25), (500, 0.30)], b_curve),
        shard(tmp_path, 2, 1, 0.40, 0.98, [(250, 0.30), (500, 0.42)], b_curve),
        shard(tmp_path, 2, 2, 0.60, 0.97, [(250, 0.30), (500, 0.65)], b_curve),
        # seed 1 alone at 3e-4: 0.45 beats seed 1's 0.42 at 1e-3, though not 1e-3's mean over three seeds (0.457)
        shard(tmp_path, 2, 1, 0.44, 0.90, [(250, 0.30), (2500, 0.45)], b_curve, settings=lower),
    ]
    assert ablation.best_rate({1e-3: [json.loads(Path(f).read_text()) for f in files[:3]]}, "A") == 1e-3
    _, pairs, _ = ablation.table(files)["markdown"].split("\n\n")
    assert "| 2 | 1 | 0.0003 | 44.0 | 98.0 | +54.0 | 45.0 % from 2500 | 500 | 0.20 |" in pairs
    assert "| 2 | 0 | 0.0003 | – | 99.0 | – | not run at this rate | – | – |" in pairs
    assert "| 2 | 2 | 0.0003 | – | 97.0 | – | not run at this rate | – | – |" in pairs


def test_a_run_stopped_by_its_time_limit_says_so_where_the_table_says_where_it_stopped(tmp_path):
    from store import open_store

    store, out = open_store(tmp_path / "traces.db"), tmp_path / "runs" / "small-s0" / "sft" / "A"
    for started, status in (("2026-12-03T01:00:00", "done"), ("2026-12-03T02:00:00", "time_limit")):
        store.record_train_run("sft", {}, {}, str(out), 3000, {}, started, status, False, {})  # the latest counts
    runs = store.train_runs()
    assert ablation.run_status(runs, out) == "time_limit" and ablation.run_status(runs, out.parent / "B") is None
    curve = [(250, 0.3), (3000, 0.6)]
    path = Path(shard(tmp_path, 2, 0, 0.5, 0.9, curve, curve))
    shards = json.loads(path.read_text())
    shards["runs"]["A"]["status"] = "time_limit"
    path.write_text(json.dumps(shards))
    plateau, pairs, _ = ablation.table([str(path)])["markdown"].split("\n\n")
    assert "| 3000 (time limit) |" in plateau.splitlines()[2] and plateau.splitlines()[3].endswith("| 3000 |")
    # its pair is no plateau figure either, and says which side was cut short
    assert "| 2 | 0 | 0.001 | 50.0 | 90.0 | +40.0 (A: time limit) |" in pairs
    shards["runs"]["B"]["status"] = "time_limit"
    path.write_text(json.dumps(shards))
    assert "| +40.0 (A, B: time limit) |" in ablation.table([str(path)])["markdown"]
    del shards["runs"]["A"]["status"], shards["runs"]["B"]["status"]
    path.write_text(json.dumps(shards))
    assert "| +40.0 | 60.0 % from" in ablation.table([str(path)])["markdown"]


def test_curves_read_runs_metrics_and_mark_where_a_run_turned_nan(tmp_path):
    logged = [
        {"step": 50, "loss": 0.5, "grad_norm": 1.2},
        {"step": 100, "eval_accuracy": 0.4},
        {"step": 150, "loss": 0.0, "grad_norm": float("nan")},
        {"step": 200, "eval_accuracy": 0.27},
    ]
    (tmp_path / "sft-A-s1.metrics.jsonl").write_text("\n".join(json.dumps(r) for r in logged))
    (tmp_path / "sft-B-s1.metrics.jsonl").write_text(json.dumps({"step": 100, "eval_accuracy": 0.9}))
    from distill.train.metrics import read_metrics

    rows = read_metrics(tmp_path / "sft-A-s1.metrics.jsonl")
    assert ablation.diverged_at(rows) == 150 and ablation.last_step(rows) == 200
    table = ablation.curves([str(p) for p in sorted(tmp_path.glob("*.jsonl"))]).splitlines()
    assert table[2] == "| sft-A-s1 | 100: 40.0 200: 27.0 | 40.0 % at 100 | 150 |"
    assert table[3] == "| sft-B-s1 | 100: 90.0 | 90.0 % at 100 | – |"


def test_results_write_nothing_for_a_seed_without_test_predictions_and_replace_nothing_unasked(tmp_path, capsys):
    work, out = tmp_path / "W2", tmp_path / "results"
    work.mkdir()
    (work / "prepared.json").write_text(json.dumps({"data_seed": 2}))
    args = ["results", "--work", str(work), "--seeds", "0", "--out-dir", str(out)]
    ablation.main(args)
    assert not list(out.glob("*.json"))  # a shard cut short before its predictions leaves no file behind
    assert "seed 0: no test predictions" in capsys.readouterr().err
    earlier = out / "ablation-plateau-d2-s0-small.json"
    earlier.write_text('{"runs": {"A": {}}}')
    with pytest.raises(SystemExit, match="results exist: .*ablation-plateau-d2-s0-small.json .*--overwrite"):
        ablation.main(args)
    assert earlier.read_text() == '{"runs": {"A": {}}}'
    ablation.main([*args, "--overwrite"])  # asked: nothing to write still replaces nothing
    assert earlier.read_text() == '{"runs": {"A": {}}}'


def finished_run(out: Path, step: int, cap: int, waited: int = 0, patience: int = 4, **state) -> Path:
    """A training run's folder as `distill sft` leaves it: its last checkpoint (`waited` evaluations without gain
    at its step, `state` more of its trainer state), then its final model."""
    (out / f"checkpoint-{step}").mkdir(parents=True)
    early = {"args": {"early_stopping_patience": patience}, "attributes": {"early_stopping_patience_counter": waited}}
    state |= {"global_step": step, "max_steps": cap, "stateful_callbacks": {"EarlyStoppingCallback": early}}
    (out / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    (out / "final").mkdir()
    (out / "final" / "config.json").write_text("{}")
    return out


def answered(tmp_path, args, rows, seed=0):
    for row in rows:
        answers = ablation.answers_dir(tmp_path, args.student, seed, row)
        answers.mkdir(parents=True)
        (answers / "text2image_answer.json").write_text("[]")


def planned(work: Path, steps: int, rows) -> tuple[set[str], dict[str, list[str]]]:
    """What `train --steps` would skip as finished, and each job's command."""
    args = ablation.make_parser().parse_args(["train", "--work", str(work), "--steps", str(steps)])
    jobs = ablation.jobs_for(args, work, [0], rows)
    return ablation.finished_jobs(jobs, work), {j.name: j.cmd for j in jobs}


def continued_to(cmd: list[str], steps: int) -> bool:
    return "--resume" in cmd and cmd[cmd.index("--max_steps") + 1] == str(steps)


B_AND_C_STAY = {"sft-B-s0", "predict-B-score-s0", "sft-C-s0", "predict-C-score-s0"}


def test_raising_the_cap_continues_runs_that_ended_at_it_and_remakes_what_came_from_them(tmp_path):
    rows = [ablation.parse_row(r) for r in ["A", "A:debias", "B", "B+dpo", "B+dpo:debias", "C"]]
    sft, dpo = (ablation.folders(tmp_path, "small", 0)[k] for k in ("sft", "dpo"))
    finished_run(sft / "A", 2500, 2500)  # trained to its old cap
    finished_run(sft / "B", 1750, 2500)  # stopped by its patience before the cap
    finished_run(sft / "C", 2500, 2500, waited=4)  # its patience ran out at the cap
    (dpo / "B" / "checkpoint-100").mkdir(parents=True)
    answered(tmp_path, ablation.make_parser().parse_args(["train", "--work", str(tmp_path)]), rows)
    finished, cmd = planned(tmp_path, 6000, rows)
    assert finished == B_AND_C_STAY and continued_to(cmd["sft-A-s0"], 6000)
    assert "--resume" in cmd["dpo-B-s0"]  # B itself was not continued: its DPO, cut short, resumes as before
    same, _ = planned(tmp_path, 2500, rows)
    assert {"sft-A-s0", "predict-A-debias-s0"} <= same  # the same cap: nothing to continue


def test_a_run_stopped_by_its_time_limit_continues_at_the_same_cap_and_a_diverged_one_does_not(tmp_path):
    from store.db import Store

    rows = [ablation.parse_row(r) for r in ["A", "A:debias", "B", "C"]]
    sft = ablation.folders(tmp_path, "small", 0)["sft"]
    store = Store(tmp_path / "traces.db")
    for row, step, status in (("A", 4567, "time_limit"), ("B", 3000, "diverged"), ("C", 2500, "time_limit")):
        finished_run(sft / row, step, 6000, waited=4 if row == "C" else 1)  # C's patience ran out at its limit
        store.record_train_run("sft", {}, {}, str(sft / row), step, {}, "2026-12-04T00:00:00", status, False, {})
    store.close()
    answered(tmp_path, ablation.make_parser().parse_args(["train", "--work", str(tmp_path)]), rows)
    finished, cmd = planned(tmp_path, 6000, rows)
    assert finished == B_AND_C_STAY and continued_to(cmd["sft-A-s0"], 6000)
    assert "sft-A-s0" in planned(tmp_path, 4567, rows)[0]  # its time limit stopped it at the cap asked now


def test_a_run_whose_patience_ran_out_at_its_time_limits_validation_alone_continues(tmp_path):
    from store.db import Store

    rows = [ablation.parse_row("A")]
    out = ablation.folders(tmp_path, "small", 0)["sft"] / "A"
    validated = [{"step": 4567, "loss": 0.1}, {"step": 4567, "eval_accuracy": 0.9}]
    finished_run(out, 4567, 6000, waited=4, eval_steps=250, best_global_step=3750, log_history=validated)
    store = Store(tmp_path / "traces.db")
    store.record_train_run("sft", {}, {}, str(out), 4567, {}, "2026-12-04T00:00:00", "time_limit", False, {})
    store.close()
    answered(tmp_path, ablation.make_parser().parse_args(["train", "--work", str(tmp_path)]), rows)
    finished, cmd = planned(tmp_path, 6000, rows)
    assert "sft-A-s0" not in finished and continued_to(cmd["sft-A-s0"], 6000)  # its fourth was the limit's own


def test_what_was_made_from_a_job_made_again_is_made_again_whenever_it_is_asked(tmp_path):
    import time

    args = ablation.make_parser().parse_args(["train", "--work", str(tmp_path)])
    rows = [ablation.parse_row(r) for r in ["B", "B:debias", "B+dpo"]]
    finished_run(ablation.folders(tmp_path, args.student, 0)["sft"] / "B", 2500, 2500)
    dpo = ablation.folders(tmp_path, args.student, 0)["dpo"] / "B"
    (dpo / "checkpoint-100").mkdir(parents=True)
    (dpo / "merged").mkdir()
    (dpo / "merged" / "config.json").write_text("{}")
    answered(tmp_path, args, rows)
    (tmp_path / "logs").mkdir()
    for name in ("predict-B-score-s0", "predict-B-debias-s0", "dpo-B-s0", "sft-B-s0"):  # B made again last
        ablation.state_file(tmp_path, name).write_text("done")
        time.sleep(0.01)
    jobs = ablation.jobs_for(args, tmp_path, [0], rows)
    assert ablation.finished_jobs(jobs, tmp_path) == {"sft-B-s0"}  # a stage cut short after B: still remade
    assert "--overwrite" in {j.name: j for j in jobs}["dpo-B-s0"].cmd  # DPO from B's new model starts over
    ablation.state_file(tmp_path, "sft-B-s0").write_text("running")  # B's own run cut short
    jobs = ablation.jobs_for(args, tmp_path, [0], rows)
    assert ablation.finished_jobs(jobs, tmp_path) == set()
    assert "--resume" in {j.name: j for j in jobs}["sft-B-s0"].cmd
    assert "--overwrite" in {j.name: j for j in jobs}["dpo-B-s0"].cmd  # not resumed on the model B is replacing


def test_data_makes_a_carried_stores_covers_again_here_and_points_the_store_at_them(tmp_path):
    import shutil

    from distill.audit import audit_store
    from store.db import Store
    from tests.helpers import ingested

    flags = ["--data-seed", "3", "--n-train", "4", "--n-val", "2", "--n-test", "2"]
    there, here = tmp_path / "there", tmp_path / "here"
    ablation.draw(ablation.make_parser().parse_args(["data", "--work", str(there), *flags]), there)
    ingested(there / "data", there / "traces.db", splits=("train", "val", "test")).close()
    here.mkdir()
    shutil.copy(there / "traces.db", here / "traces.db")  # the store alone travels
    shutil.rmtree(there)
    ablation.main(["data", "--work", str(here), *flags])
    store = Store(here / "traces.db")
    options = [o.image for it in store.items(task="text2image") for o in it.options]
    paths = list(store.image_hashes()) + [p for it in store.items() for p in it.images] + options
    assert options and all(p.startswith(str(here.resolve() / "data" / "images")) and Path(p).is_file() for p in paths)
    assert audit_store(store).leaks == 0  # what `distill sft` checks first: it hashes every option's cover
    ablation.main(["data", "--work", str(here), *flags])  # where they are already: nothing to move
