"""The teacher-at-scale bench reads vLLM's running batch from the server's Prometheus page and empties the server's
caches before each measurement."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from bench import teacher_at_scale

PAGE = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="/tmp/m"} 12.0
vllm:num_requests_running{engine="1",model_name="/tmp/m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="/tmp/m"} 40.0
vllm:num_requests_running_total_not_a_gauge{engine="0"} 99.0
"""


def test_a_gauge_sums_its_engines_and_ignores_other_names():
    assert teacher_at_scale.gauge(PAGE, "vllm:num_requests_running") == 15.0
    assert teacher_at_scale.gauge(PAGE, "vllm:num_requests_waiting") == 40.0
    assert teacher_at_scale.gauge(PAGE, "vllm:kv_cache_usage_perc") == 0.0


def serving(answer):
    """A local HTTP server whose every GET or POST `answer(method, path)` answers with (status, body)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self):
            status, body = answer(self.command, self.path)
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = reply

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_the_running_batch_is_averaged_over_the_samples_where_the_server_was_busy():
    pages = iter([PAGE.replace("12.0", "0.0").replace("3.0", "0.0")] * 3 + [PAGE] * 1000)
    server, root = serving(lambda method, path: (200, next(pages).encode()))
    try:
        batch = teacher_at_scale.RunningBatch(root)
        time.sleep(1.2)
        got = batch.stop()
    finally:
        server.shutdown()
    assert got == {"server_running_mean": 15.0, "server_running_max": 15.0, "server_waiting_mean": 40.0}


def test_every_cache_is_emptied_and_a_prefix_cache_still_held_is_asked_again(monkeypatch):
    monkeypatch.setattr(teacher_at_scale.time, "sleep", lambda s: None)
    asked, refusals = [], iter([b'{"success": false}', b'{"success": false}'])

    def post(method, path):
        asked.append((method, path))
        return 200, next(refusals, b'{"success": true}') if path == "/reset_prefix_cache" else b""

    server, root = serving(post)
    try:
        teacher_at_scale.reset_caches(root)
    finally:
        server.shutdown()
    assert [p for m, p in asked if m == "POST"] == ["/reset_prefix_cache"] * 3 + [
        "/reset_mm_cache",
        "/reset_encoder_cache",
    ]


def test_a_prefix_cache_that_is_never_emptied_stops_the_bench(monkeypatch):
    monkeypatch.setattr(teacher_at_scale.time, "sleep", lambda s: None)
    server, root = serving(lambda method, path: (200, b'{"success": false}'))
    try:
        with pytest.raises(SystemExit, match="would not empty its prefix cache"):
            teacher_at_scale.reset_caches(root)
    finally:
        server.shutdown()


def test_the_batch_before_the_measuring_process_is_warm_is_left_out():
    batch = teacher_at_scale.RunningBatch("http://127.0.0.1:9")  # nothing there: no sample of its own
    batch.samples = [(1.0, 2.0, 0.0), (2.0, 0.0, 0.0), (3.0, 60.0, 4.0), (4.0, 64.0, 0.0)]
    assert batch.stop(since=2.5) == {
        "server_running_mean": 62.0,
        "server_running_max": 64.0,
        "server_waiting_mean": 2.0,
    }


def instant_level(tmp_path, *argv: str) -> dict:
    """One level (4 in flight, 6 items) against the instant server: real measuring processes, the graph and the
    direct feed."""
    proc, url = teacher_at_scale.start_instant_server()
    args = teacher_at_scale.make_parser().parse_args(["--server", "instant", *argv])
    args.url, args.model_name = url, "instant"
    try:
        teacher_at_scale.level_items(4, 6, tmp_path)
        return teacher_at_scale.run_level(args, 4, 6, args.workers.split(","), tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_each_repeat_measures_both_sides_on_the_same_items_the_first_side_alternating(tmp_path):
    result = instant_level(tmp_path, "--repeats", "2")
    first, second = result["runs"]
    assert (first["direct"]["order"], first["graph_w1"]["order"]) == (0, 1)
    assert (second["graph_w1"]["order"], second["direct"]["order"]) == (0, 1)
    for run in (first, second):
        assert run["graph_w1"]["requests"] == run["direct"]["requests"] > 6 and run["graph_w1"]["failed"] == 0
        assert run["graph_w1"]["share_of_direct"] == run["direct"]["seconds"] / run["graph_w1"]["seconds"]
        assert "server_running_mean" not in run["direct"]  # an instant server has no batch to sample


def test_a_graph_variant_runs_at_its_own_passes_a_request_in_flight(tmp_path):
    """`--workers 1,1p3`: the same graph at --passes-factor's passes in flight a request, then at three."""
    result = instant_level(tmp_path, "--workers", "1,1p3")
    (run,) = result["runs"]
    assert run["graph_w1"]["passes_in_flight"] == 2 * 4 and run["graph_w1p3"]["passes_in_flight"] == 3 * 4
    assert run["graph_w1p3"]["requests"] == run["direct"]["requests"] and run["graph_w1p3"]["failed"] == 0
    assert result["median"]["graph_w1p3_share_of_direct"] == run["graph_w1p3"]["share_of_direct"]
