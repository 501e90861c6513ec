"""A local server speaking the vLLM routes Tacit uses, over real HTTP (no client patching).

Modelled on vLLM's OpenAI-compatible server with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`:
- https://docs.vllm.ai/en/latest/features/lora/ ("Dynamically serving LoRA Adapters"):
  `POST /v1/load_lora_adapter` {"lora_name", "lora_path"} answers 200 with a plain-text success
  line, 400 when the name is already loaded or the path holds no adapter;
  `POST /v1/unload_lora_adapter` {"lora_name"} answers 200, or 404 for a name not loaded;
  `GET /v1/models` lists the base model and each loaded adapter with `parent` = the base and
  `root` = its path (same page, "New format for --lora-modules" / model cards);
- https://docs.vllm.ai/en/latest/serving/openai_compatible_server/: `/v1/chat/completions`
  with `model` = a served name; a name not served is a 404 error body; streams are SSE
  `chat.completion.chunk` events, a usage chunk with `stream_options.include_usage`, `[DONE]`.

It answers deterministically, "[<model>] <last user message>", so a test sees which adapter
answered. `events` records every load and unload.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

BASE = "tiny-random"


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}},
                        status_code=status)


def fake_vllm(base: str = BASE) -> FastAPI:
    app = FastAPI()
    loras: dict[str, str] = {}
    events: list[tuple[str, str]] = []
    app.state.loras, app.state.events = loras, events

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": base, "object": "model", "created": 0, "owned_by": "vllm", "root": base, "parent": None}]
        data += [{"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": path, "parent": base}
                 for name, path in loras.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request) -> Any:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.", "BadRequestError")
        if name in loras:
            return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if not (Path(path) / "adapter_config.json").is_file():
            return _error(400, f"Loading lora {name} failed: No adapter found for {path}", "BadRequestError")
        loras[name] = path
        events.append(("load", name))
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request) -> Any:
        name = (await request.json()).get("lora_name")
        if name not in loras:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del loras[name]
        events.append(("unload", name))
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        model = body.get("model")
        if model != base and model not in loras:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        words = f"[{model}] {question}".split(" ")[: int(body.get("max_tokens") or 16)]
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        use = {"prompt_tokens": sum(len(m["content"].split()) for m in body["messages"]),
               "completion_tokens": len(words)}
        use["total_tokens"] = use["prompt_tokens"] + use["completion_tokens"]
        if not body.get("stream"):
            return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)},
                                 "finish_reason": "stop", "logprobs": None}], "usage": use}

        def events_out() -> Any:
            def chunk(delta: dict[str, Any], finish: str | None) -> str:
                return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                              "model": model, "choices": [{"index": 0, "delta": delta,
                                                                           "finish_reason": finish}]}) + "\n\n"
            yield chunk({"role": "assistant", "content": ""}, None)
            for i, word in enumerate(words):
                yield chunk({"content": word if i == 0 else " " + word}, None)
            yield chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                             "model": model, "choices": [], "usage": use}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events_out(), media_type="text/event-stream")

    return app
