"""The HTTP teacher retries through the shared rate budget: a throttled answer is counted by the
budget (which blocks its key for every worker) and retried by the `openai` client."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from training.teacher import OpenAITeacher, Passage, TeacherError


class _Throttling(BaseHTTPRequestHandler):
    """429 (Retry-After: 0) for the first `throttle` requests, then a chat completion."""

    throttle = 1
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.path)
        if len(self.seen) <= self.throttle:
            body, status, extra = b'{"error": {"message": "slow down"}}', 429, {"Retry-After": "0"}
        else:
            content = json.dumps({"questions": [{"question": "Who owns Basalt?", "answer": "Ada"}]})
            body = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}).encode()
            status, extra = 200, {}
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **extra}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    _Throttling.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_throttled_teacher_is_retried_through_the_budget(server: str) -> None:
    _Throttling.throttle = 1
    teacher = OpenAITeacher(server, "m")
    reading = teacher.read(Passage("Basalt", [], "Owner: Ada"))
    assert reading.qa == [("Who owns Basalt?", "Ada")]
    assert _Throttling.seen == ["/v1/chat/completions"] * 2
    assert teacher.budget.stats.throttled == 1 and teacher.budget.key == "teacher:127.0.0.1"
    teacher.close()


def test_a_teacher_that_keeps_throttling_is_a_teacher_error(server: str) -> None:
    _Throttling.throttle = 100
    teacher = OpenAITeacher(server, "m")
    with pytest.raises(TeacherError, match="HTTP 429"):
        teacher.read(Passage("Basalt", [], "Owner: Ada"))
    assert len(_Throttling.seen) == 1 + OpenAITeacher.MAX_RETRIES
    assert teacher.budget.stats.throttled == 1 + OpenAITeacher.MAX_RETRIES
