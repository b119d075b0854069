"""The openai backend against `spar serve` and against a deliberately flaky loopback server."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spar.llm import BackendError, BackendOptions, Sampling
from spar.llm.openai_backend import OpenAIBackend, parse_spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UvicornThread:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_model_string_parsing():
    assert parse_spec("openai:http://127.0.0.1:8000/v1#embedded") == ("http://127.0.0.1:8000/v1", "embedded")
    with pytest.raises(BackendError, match="openai:<base_url>#<model>"):
        parse_spec("openai:http://x/v1")


@pytest.mark.model
def test_openai_backend_against_spar_serve(embedded):
    from spar.serve import build_app

    chats = [[{"role": "user", "content": "Name a colour."}], [{"role": "user", "content": "Say hello in French."}]]
    with UvicornThread(build_app(embedded, "embedded")) as srv:
        import httpx

        models = httpx.get(f"http://127.0.0.1:{srv.port}/v1/models").json()
        assert models["data"][0]["id"] == "embedded"
        client = OpenAIBackend(f"http://127.0.0.1:{srv.port}/v1", "embedded")
        s = Sampling(max_new_tokens=16)
        via_http = client.generate(chats, s)
        assert via_http == embedded.generate(chats, s)  # greedy: the server adds nothing
        many = client.generate(chats[:1], Sampling(n=3, temperature=1.0, max_new_tokens=8))
        assert len(many[0]) == 3


class Flaky(BaseHTTPRequestHandler):
    """Per request text: 1st try 500, 2nd 429, 3rd hangs past the client timeout, 4th malformed JSON, 5th succeeds."""

    tries: dict[str, int] = {}
    served: list[str] = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code, body: bytes, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = req["messages"][-1]["content"]
        with self.lock:
            k = self.tries[text] = self.tries.get(text, 0) + 1
        if k == 1:
            return self._send(500, b'{"error": {"message": "boom"}}')
        if k == 2:
            return self._send(429, b'{"error": {"message": "slow down"}}')
        if k == 3:
            time.sleep(1.5)  # the client gives up after 0.5 s
            return self._send(200, b"{}")
        if k == 4:
            return self._send(200, b'{"id": "x", "choices": [ {"index": 0, "mess')
        with self.lock:
            self.served.append(text)
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                "choices": [{"index": i, "message": {"role": "assistant", "content": f"echo:{text}:{i}"},
                             "finish_reason": "stop"} for i in range(req.get("n", 1))],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
        self._send(200, json.dumps(body).encode())


def test_retries_bring_every_request_back_exactly_once(monkeypatch):
    import spar.llm.openai_backend as ob

    async def no_sleep(_):
        return None

    monkeypatch.setattr(ob.asyncio, "sleep", no_sleep)  # backoff waits are not what is tested
    Flaky.tries.clear()
    Flaky.served.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m",
                                BackendOptions(timeout=0.5, concurrency=4, max_retries=6))
        chats = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
        out = backend.generate(chats, Sampling(n=2))
    finally:
        server.shutdown()
    assert out == [[f"echo:q{i}:0", f"echo:q{i}:1"] for i in range(6)]
    assert sorted(Flaky.served) == sorted(f"q{i}" for i in range(6))  # each served once
    assert all(v == 5 for v in Flaky.tries.values())


def test_client_errors_are_not_retried():
    class NotFound(Flaky):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(404, b'{"error": {"message": "no such model"}}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", BackendOptions(timeout=2))
        with pytest.raises(BackendError, match="404"):
            backend.generate([[{"role": "user", "content": "x"}]], Sampling())
    finally:
        server.shutdown()


def test_a_null_content_is_a_failure_not_an_empty_answer(monkeypatch):
    import spar.llm.openai_backend as ob

    async def no_sleep(_):
        return None

    class Null(Flaky):
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]}
            self._send(200, json.dumps(body).encode())

    monkeypatch.setattr(ob.asyncio, "sleep", no_sleep)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Null)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", BackendOptions(timeout=2, max_retries=1))
        with pytest.raises(BackendError, match="content: null"):
            backend.generate([[{"role": "user", "content": "x"}]], Sampling())
    finally:
        server.shutdown()


def test_api_key_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("SPAR_OPENAI_API_KEY", "sk-secret-123")
    b = OpenAIBackend("http://127.0.0.1:1/v1", "m")
    assert "sk-secret" not in repr(b) and "sk-secret" not in b.name


def test_retry_after_is_honoured(monkeypatch):
    import spar.llm.openai_backend as ob

    waits = []

    async def record(s):
        waits.append(s)

    class Busy(Flaky):
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with self.lock:
                k = self.tries["busy"] = self.tries.get("busy", 0) + 1
            if k == 1:
                self.send_response(429)
                body = b'{"error": {"message": "slow down"}}'
                self.send_header("Retry-After", "5")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            body = {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
            self._send(200, json.dumps(body).encode())

    monkeypatch.setattr(ob.asyncio, "sleep", record)
    Flaky.tries.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", BackendOptions(timeout=2))
        assert backend.generate([[{"role": "user", "content": "x"}]], Sampling()) == [["ok"]]
    finally:
        server.shutdown()
    assert waits and waits[0] >= 5.0


def test_timeout_and_retries_from_the_command_line_reach_the_backend(monkeypatch):
    from typer.testing import CliRunner

    import spar.llm
    from spar.cli import app

    built = []

    def fake_load(model, options):
        built.append(options)
        raise spar.llm.BackendError("stop here")

    monkeypatch.setattr(spar.llm, "load_backend", fake_load)
    res = CliRunner().invoke(app, ["--timeout", "7", "--retries", "2", "generate", "-m", "openai:http://127.0.0.1:9/v1#m"])
    assert res.exit_code == 2 and (built[0].timeout, built[0].max_retries) == (7.0, 2), res.output
    built.clear()
    res = CliRunner().invoke(app, ["generate", "-m", "openai:http://127.0.0.1:9/v1#m"])  # no state carried over
    assert res.exit_code == 2 and (built[0].timeout, built[0].max_retries) == (120.0, 6), res.output


def test_a_request_that_fails_for_good_keeps_the_others_answers(tmp_path, monkeypatch):
    import spar.llm.openai_backend as ob
    from spar.generate import generate_file
    from spar.io import read_jsonl
    from spar.llm import PartialFailure
    from spar.types import Completion, Message, Prompt

    async def no_sleep(_):
        return None

    class OneBad(Flaky):
        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = req["messages"][-1]["content"]
            if text == "q2":
                return self._send(500, b'{"error": {"message": "always broken"}}')
            body = {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo:{text}"}, "finish_reason": "stop"}]}
            self._send(200, json.dumps(body).encode())

    monkeypatch.setattr(ob.asyncio, "sleep", no_sleep)
    server = ThreadingHTTPServer(("127.0.0.1", 0), OneBad)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "out.jsonl"
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", BackendOptions(timeout=2, max_retries=1))
        prompts = [Prompt(id=f"p{i}", messages=[Message(role="user", content=f"q{i}")]) for i in range(4)]
        with pytest.raises(PartialFailure, match="1 of 4 requests failed; the first: .*request 2"):
            generate_file(backend, prompts, out, Sampling(), chunk=4, show=False)
    finally:
        server.shutdown()
    assert sorted(r.id for r in read_jsonl(out, Completion)) == ["p0", "p1", "p3"]  # kept; a rerun asks only for p2
