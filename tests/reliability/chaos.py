"""A loopback OpenAI-compatible server that fails on purpose (tests only).

Each request's fate is drawn from its body and how often that body was seen, so a run is the same
every time: an answer, or one of the faults a real server shows — 500, 503 and 429 with
Retry-After, a hang past the client's timeout, a body that is not JSON, a cut-off body, content
null, no choices, a dropped connection, a slow answer. An answer's text depends only on the prompt
and the seed, so whatever the retries, the right text is known. The server binds 127.0.0.1 only,
serves at most ``max_requests`` and shuts itself down after ``lifetime`` seconds."""

from __future__ import annotations

import collections
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("500", "503_retry_after", "429_retry_after", "hang", "not_json", "cut_off", "content_null", "no_choices",
          "drop", "slow")


def answer(text: str, seed: int, k: int) -> str:
    return f"answer to {text!r} with seed {seed}, sample {k}"


class ChaosServer:
    def __init__(self, fault_rate: float = 0.5, hang_s: float = 1.0, delay_s: float = 0.0, lifetime: float = 120.0,
                 max_requests: int = 5000, faults: tuple[str, ...] = FAULTS):
        self.fault_rate, self.hang_s, self.delay_s, self.faults = fault_rate, hang_s, delay_s, faults
        self.max_requests = max_requests
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.seen: collections.Counter[str] = collections.Counter()
        self.keys: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> "ChaosServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    def fate(self, body: bytes) -> str:
        with self.lock:
            digest = hashlib.sha256(body).hexdigest()
            self.seen[digest] += 1
            if self.requests >= self.max_requests:
                return "over_budget"
            draw = int(hashlib.sha256(f"{digest}:{self.seen[digest]}".encode()).hexdigest()[:8], 16) / 2 ** 32
        if draw >= self.fault_rate:
            return "ok"
        return self.faults[int(draw / self.fault_rate * len(self.faults)) % len(self.faults)]

    def _handler(self):
        chaos = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict | None = None, length: int | None = None):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                assert self.client_address[0] == "127.0.0.1"
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with chaos.lock:
                    chaos.keys.add(self.headers.get("Authorization", ""))
                fate = chaos.fate(body)
                with chaos.lock:
                    chaos.outcomes[fate] += 1
                req = json.loads(body)
                text, seed, n = req["messages"][-1]["content"], req.get("seed", 0), req.get("n", 1)
                ok = {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                      "choices": [{"index": k, "message": {"role": "assistant", "content": answer(text, seed, k)},
                                   "finish_reason": "stop"} for k in range(n)],
                      "usage": {"prompt_tokens": 3, "completion_tokens": 5 * n, "total_tokens": 3 + 5 * n}}
                if fate == "ok":
                    time.sleep(chaos.delay_s)
                    return self._send(200, json.dumps(ok).encode())
                if fate == "slow":
                    time.sleep(chaos.hang_s / 4)
                    return self._send(200, json.dumps(ok).encode())
                if fate == "500":
                    return self._send(500, b'{"error": {"message": "internal"}}')
                if fate in ("503_retry_after", "over_budget"):
                    return self._send(503, b'{"error": {"message": "busy"}}', {"Retry-After": "0.1"})
                if fate == "429_retry_after":
                    return self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0.2"})
                if fate == "hang":
                    time.sleep(chaos.hang_s)
                    return self._send(200, json.dumps(ok).encode())  # too late: the client gave up
                if fate == "not_json":
                    return self._send(200, b"<html>gateway error</html>")
                if fate == "cut_off":
                    full = json.dumps(ok).encode()
                    self._send(200, full[: len(full) // 2], length=len(full))
                    self.close_connection = True
                    return
                if fate == "content_null":
                    ok["choices"][0]["message"]["content"] = None
                    return self._send(200, json.dumps(ok).encode())
                if fate == "no_choices":
                    ok["choices"] = []
                    return self._send(200, json.dumps(ok).encode())
                if fate == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                raise AssertionError(fate)

        return Handler
