"""Output held while an engine starts: its own and its child processes', released in full or dropped."""

import os
import subprocess
import sys
import time

from distill.backends.held_output import held_output

# What an engine's spawned process prints when it fails to start: its log on stdout, a traceback on stderr
_CHILD = (
    "import sys, time; time.sleep(float(sys.argv[1])); "
    "print('(EngineCore pid=7) INFO [core.py:133] Initializing a V1 LLM engine', flush=True); "
    "sys.stderr.write('Process EngineCore:\\nTraceback (most recent call last):\\nValueError: no memory\\n')"
)


def _child(delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(delay)])


def test_a_start_that_works_shows_everything_once_it_is_up(capfd):
    with held_output():
        _child().wait()
        os.write(2, b"main process line\n")
        assert capfd.readouterr() == ("", "")  # nothing shown while starting
    out, err = capfd.readouterr()
    assert "Initializing a V1 LLM engine" in out
    assert err == "Process EngineCore:\nTraceback (most recent call last):\nValueError: no memory\nmain process line\n"


def test_a_failed_start_keeps_its_output_for_the_caller_and_shows_none_of_it(capfd):
    with held_output() as held:
        _child().wait()
        text = held.release(write_held=False)
    assert "Initializing a V1 LLM engine" in text and "ValueError: no memory" in text
    assert capfd.readouterr() == ("", "")


def test_what_the_engine_s_processes_print_after_its_start_passes_through(capfd):
    with held_output() as held:
        late = _child(delay=0.5)  # still running when the hold ends, as an engine's processes are
        held.release(write_held=True)
    late.wait()
    err = ""
    for _ in range(100):  # the relay copies the child's lines as they come
        err += capfd.readouterr().err
        if "ValueError" in err:
            break
        time.sleep(0.05)
    assert "ValueError: no memory" in err
