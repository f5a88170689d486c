"""Append-only schema migrations, applied in order on every open (never edit a released one)."""

from __future__ import annotations

import sqlite_utils

MIGRATIONS = []


def migration(fn):
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({"id": str, "kind": str, "config": str, "models": str, "code_version": str,
                       "started_at": str, "ended_at": str, "status": str, "summary": str}, pk="id")
    db["items"].create({"id": str, "task": str, "split": str, "source": str, "system": str, "input": str,
                        "options": str, "images": str, "gold": str, "journal": str}, pk="id")
    db["images"].create({"sha256": str, "path": str, "width": int, "height": int, "bytes": int}, pk="sha256")
    db["calls"].create({"id": str, "run_id": str, "item_id": str, "agent": str, "model": str, "request": str,
                        "response": str, "prompt_tokens": int, "completion_tokens": int, "duration_ms": float,
                        "error": str, "created_at": str}, pk="id")
    db["descriptions"].create({"image_sha256": str, "model": str, "prompt_version": str, "text": str,
                               "call_id": str, "created_at": str}, pk=("image_sha256", "model", "prompt_version"))
    db["traces"].create({"id": str, "run_id": str, "item_id": str, "sample": int, "attempt": int, "hinted": int,
                         "descriptions": str, "rationale": str, "answer": str, "verdict": str, "reason": str,
                         "feedback": str, "call_id": str, "created_at": str}, pk="id")
    db["item_runs"].create({"run_id": str, "item_id": str, "status": str, "accepted": int, "rejected": int,
                            "error": str, "finished_at": str}, pk=("run_id", "item_id"))
    db["calls"].create_index(["run_id", "item_id"])
    db["traces"].create_index(["run_id", "item_id"])
    db["traces"].create_index(["verdict"])


@migration
def m002_provenance_and_consistency(db: sqlite_utils.Database) -> None:
    db["items"].add_column("parents", str)
    db["items"].add_column("transform", str)
    db["traces"].add_column("consistency", str)
    db["traces"].add_column("letter_probs", str)


@migration
def m003_trace_search(db: sqlite_utils.Database) -> None:
    db["traces"].enable_fts(["rationale", "reason"], create_triggers=True, tokenize="porter")


@migration
def m004_training_runs(db: sqlite_utils.Database) -> None:
    db["train_runs"].create({"id": str, "kind": str, "config": str, "dataset": str, "output_dir": str,
                             "best_step": int, "metrics": str, "started_at": str, "ended_at": str,
                             "status": str}, pk="id")
