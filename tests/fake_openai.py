"""A small real OpenAI-compatible chat server on 127.0.0.1, in a thread of the test process: a teacher that answers
slowly (while `hold` is set), or one that refuses every request with a 401 whose body echoes the key it was sent
(as some proxies do). Like `vllm serve` it also has `/tokenize` (each letter is one token: its code point, counted in
`tokenize_calls`; the first `drop_tokenize` calls lose their connection unanswered) and answers a scored step
(`logprobs`) with the letters it may produce (`allowed_token_ids`), A most likely."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = (
    "The cover shows repeated coloured shapes whose arrangement and hue stand for the idea of the story; only one "
    "option names the same shapes, colour and layout.\nAnswer: A"
)


class FakeTeacher:
    def __init__(self, mode: str = "answer"):
        self.mode = mode  # "answer" | "echo_401"
        self.hold = threading.Event()  # set: each request waits until it is cleared (or 60 s pass)
        self.requests = 0
        self.tokenize_calls = 0
        self.drop_tokenize = 0  # how many /tokenize calls to answer by closing the connection (a ReadError)
        self._count = threading.Lock()
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with teacher._count:
                    teacher.requests += 1
                if self.path.rstrip("/").endswith("/tokenize"):
                    return self._tokenize(json.loads(body or b"{}"))
                if teacher.mode == "echo_401":
                    auth = self.headers.get("authorization", "")
                    key = auth.removeprefix("Bearer ")
                    payload = {
                        "error": {
                            "message": f"Incorrect API key provided: {key}. You sent the header authorization: {auth}",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    }
                    return self._send(401, payload)
                deadline = time.time() + 60
                while teacher.hold.is_set() and time.time() < deadline:
                    time.sleep(0.05)
                request = json.loads(body or b"{}")
                choice = {"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}
                if request.get("logprobs"):
                    choice = _scored(request)
                return self._send(
                    200,
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request.get("model", "fake"),
                        "choices": [choice],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
                    },
                )

            def _tokenize(self, request: dict) -> None:
                with teacher._count:
                    teacher.tokenize_calls += 1
                    drop = teacher.tokenize_calls <= teacher.drop_tokenize
                if drop:  # no answer at all: the client sees the connection end (httpx.ReadError / RemoteProtocolError)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                tokens = [ord(c) for c in request.get("prompt", "")]
                return self._send(200, {"count": len(tokens), "max_model_len": 4096, "tokens": tokens})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTeacher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.hold.clear()
        self.server.shutdown()
        self.server.server_close()


def _scored(request: dict) -> dict:
    """A scored step's choice: the allowed letters (token id = code point) with A twice as likely as each other."""
    letters = [chr(i) for i in (request.get("allowed_token_ids") or [ord(c) for c in "ABCD"])]
    weights = {L: 2.0 if L == "A" else 1.0 for L in letters}
    z = sum(weights.values())
    top = [{"token": L, "logprob": math.log(w / z), "bytes": None} for L, w in weights.items()]
    return {
        "index": 0,
        "message": {"role": "assistant", "content": letters[0]},
        "logprobs": {"content": [{**top[0], "top_logprobs": top}]},
        "finish_reason": "length",
    }
