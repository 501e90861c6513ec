"""A tiny OpenAI-compatible server (chat completions) for teacher tests, on a free local port.

It answers every passage with one question about the passage's heading line (answered by the
passage body), one paraphrase and one relation, inside a code fence as models often do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []
    reply: str | None = None
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        passage = body["messages"][-1]["content"]
        heading, _, text = passage.partition("\n\n")
        content = self.reply if self.reply is not None else "```json\n" + json.dumps({
            "questions": [{"question": f"What does {heading} say?", "answer": text},
                          {"question": "", "answer": "dropped: no question"}],
            "paraphrases": [f"In other words: {heading}."],
            "relations": [f"{heading} relates to the team."],
        }) + "\n```"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve_fake_openai() -> Iterator[str]:
    """Yields the base URL (…/v1) of a fresh fake server."""
    FakeOpenAI.requests, FakeOpenAI.reply, FakeOpenAI.status = [], None, 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
