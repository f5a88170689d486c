"""A call in a process of its own: its value comes back, its error is raised where the result is collected (a
user's error as one line), a process that dies says so, and stop() ends one still running."""

from __future__ import annotations

import os
import time

import pytest

from distill.errors import UserError
from distill.kit.beside import Beside, BesideError


def add(a, b):
    return {"sum": a + b, "pid": os.getpid()}


def start_methods():
    import multiprocessing

    return multiprocessing.get_start_method(), multiprocessing.get_context().get_start_method()


def refuse(name):
    raise UserError(f"0 accepted rationales in the store for {name}")


def crash():
    raise KeyError("lost")


def die():
    os._exit(3)


def wait_long():
    time.sleep(120)


def test_its_value_comes_back_from_another_process():
    out = Beside(add, 2, 3).result()
    assert out["sum"] == 5 and out["pid"] != os.getpid()


def test_its_own_children_start_as_in_a_process_of_its_own():
    """A training run's loader workers in the twin's process start as `distill sft`'s would, not spawned anew
    each epoch (the parent's default, since this process has not fixed its own)."""
    import multiprocessing

    default = multiprocessing.get_context().get_start_method()
    assert Beside(start_methods).result() == (default, default)


def test_a_users_error_stays_one_line_and_names_the_run():
    with pytest.raises(UserError) as exc:
        Beside(refuse, "the reason task", name="letters-only twin").result()
    assert str(exc.value) == "letters-only twin: 0 accepted rationales in the store for the reason task"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(BesideError, match="KeyError") as exc:
        Beside(crash, name="twin").result()
    assert "in crash" in str(exc.value)


def test_a_process_that_dies_says_so():
    with pytest.raises(BesideError, match="ended without a result \\(exit code 3\\)"):
        Beside(die).result()


def test_stop_ends_a_running_one():
    run = Beside(wait_long)
    t0 = time.monotonic()
    run.stop()
    assert time.monotonic() - t0 < 30 and not run._proc.is_alive()


def test_check_raises_a_failure_early_and_keeps_a_value_for_result():
    failed = Beside(crash, name="twin")
    failed._proc.join()
    with pytest.raises(BesideError, match="twin: 'lost'"):
        failed.check()
    running = Beside(wait_long)
    running.check()  # still working: nothing to raise
    running.stop()
    done = Beside(add, 1, 1)
    done._proc.join()
    done.check()
    assert done.result()["sum"] == 2
