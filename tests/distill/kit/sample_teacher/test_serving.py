"""A sample teacher that cannot start says why, in the server's own words, as one line of the CLI."""

import socket

import pytest

from tests.cli_main import run_main


@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_is_the_servers_own_reason(taken_port):
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, SampleTeacherError, serving

    with pytest.raises(SampleTeacherError) as err, serving(SampleTeacherConfig(port=taken_port)):
        pass
    message = str(err.value)
    assert f"did not start on 127.0.0.1:{taken_port}" in message and "address already in use" in message
    assert "\n" not in message


def test_demo_ends_in_one_line_when_the_teacher_cannot_start(monkeypatch, capsys, tmp_path, taken_port):
    """`distill demo` starts the teacher with `serving` after its data and student are made; here it starts it at
    once, on a taken port."""
    import distill.kit.demo
    from distill.kit.sample_teacher.serving import SampleTeacherConfig, serving

    def demo(*args, **kwargs):
        with serving(SampleTeacherConfig(port=taken_port)):
            pytest.fail("the teacher started on a taken port")

    monkeypatch.setattr(distill.kit.demo, "run_demo", demo)
    ran = run_main(monkeypatch, capsys, "demo", "--workdir", tmp_path / "w")
    ran.one_error_line("the sample teacher did not start", "address already in use", "another port")
    assert len(ran.err.strip().splitlines()) == 1, ran.err  # that line alone: no traceback, no server log
