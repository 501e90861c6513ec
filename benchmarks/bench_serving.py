"""Serving a team's model through `tacit serve`: completions/s and p50/p99 latency of 64-token
answers with 1, 4 and 8 concurrent clients, beside a bare transformers `generate` loop on the
same model and adapter in the same run (the ceiling); and the cost of alternating requests
between two teams' adapters (both kept loaded, and with room for one adapter only).

    .venv/bin/python benchmarks/bench_serving.py [--model tiny-random|smollm2-135m] [--requests 16]

The server is `ingestion.api.app` (the app of `tacit serve`) under uvicorn on loopback, driven by
threads each sending chat completions one after another (temperature 0, max_tokens 64) with a
team key. Each team's adapter is a rank-8 LoRA with random weights: answers differ per team,
and their length is what the model generates (the figures report tokens per answer). The
embedded engine generates one answer at a time, so more clients raise latency, not throughput.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.sandbox.server import free_port  # noqa: E402
from ingestion.api.app import create_app  # noqa: E402
from tacit.config import load_config  # noqa: E402
from tacit.context import Context  # noqa: E402
from tests.serving.helpers import add_version, serve_in_thread  # noqa: E402
from training import base_models  # noqa: E402
from training.selection import chat_prompt_ids  # noqa: E402
from training.serving.engine import EmbeddedEngine  # noqa: E402
from training.serving.keys import create_key  # noqa: E402

QUESTION = "Summarise how our team ships a change to production, step by step."
MAX_TOKENS = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bare_loop(ctx: Context, model_name: str, adapter: str, n: int) -> dict[str, Any]:
    """The ceiling: the same base model and adapter, `generate` called in a plain loop."""
    from peft import PeftModel

    tokenizer = base_models.load_tokenizer(model_name, ctx.data_dir)
    model = PeftModel.from_pretrained(base_models.load_model(model_name, ctx.data_dir, device="cpu"), adapter)
    model.eval()
    ids = torch.tensor([chat_prompt_ids(tokenizer, [{"role": "user", "content": QUESTION}])])
    latencies, tokens = [], 0
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_TOKENS,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        latencies.append(time.perf_counter() - t0)
        tokens += out.shape[1] - ids.shape[1]
    return {"wall": time.perf_counter() - start, "latencies": latencies, "tokens": tokens, "n": n}


def drive(url: str, keys: dict[str, str], models: list[str], clients: int, n: int) -> dict[str, Any]:
    """`n` completions by `clients` threads; request i asks models[i % len(models)]."""
    latencies: list[float] = []
    tokens = [0]
    failures = [0]
    counter = iter(range(n))
    lock = threading.Lock()

    def work() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                model = models[i % len(models)]
                t0 = time.perf_counter()
                r = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {keys[model]}"},
                              json={"model": model, "messages": [{"role": "user", "content": QUESTION}],
                                    "max_tokens": MAX_TOKENS, "temperature": 0})
                elapsed = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(elapsed)
                        tokens[0] += r.json()["usage"]["completion_tokens"]
                    else:
                        failures[0] += 1

    threads = [threading.Thread(target=work) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - start, "latencies": latencies, "tokens": tokens[0], "n": len(latencies),
            "failures": failures[0]}


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one measurement: the median rate; latencies pooled."""
    rates = [r["n"] / r["wall"] for r in runs]
    return {"rate": statistics.median(rates), "latencies": [x for r in runs for x in r["latencies"]],
            "tokens": sum(r["tokens"] for r in runs), "n": sum(r["n"] for r in runs),
            "failures": sum(r.get("failures", 0) for r in runs), "wall": sum(r["wall"] for r in runs)}


def line(label: str, r: dict[str, Any]) -> str:
    lat = r["latencies"]
    extra = f", {r['failures']} failed" if r.get("failures") else ""
    return (f"{label:<48} {r['rate']:6.2f} completions/s  p50 {percentile(lat, 0.5) * 1000:6.0f} ms  "
            f"p99 {percentile(lat, 0.99) * 1000:6.0f} ms  {r['tokens'] / max(1, r['n']):5.1f} tokens/answer{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--requests", type=int, default=16, help="completions per measurement and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring everything (median rate)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tacit.toml"
        path.write_text(f'[storage]\ndatabase_url = "sqlite:///{tmp}/tacit.db"\ndata_dir = "{tmp}/data"\n\n'
                        '[inference]\nmax_queue = 64\n\n'
                        f'[[teams]]\nname = "alpha"\nbase_model = "{args.model}"\nrecord_conversations = false\n\n'
                        f'[[teams]]\nname = "beta"\nbase_model = "{args.model}"\nrecord_conversations = false\n',
                        encoding="utf-8")
        ctx = Context(load_config(path))
        adapter = add_version(ctx, "alpha", 1, seed=1)
        add_version(ctx, "beta", 1, seed=2)
        keys = {team: create_key(ctx, team)[1] for team in ("alpha", "beta")}
        n = args.requests
        print(f"model {args.model}, answers of max_tokens={MAX_TOKENS}, {n} completions x {args.rounds} rounds "
              f"per line, torch threads {torch.get_num_threads()}, device cpu")
        bare_loop(ctx, args.model, adapter, 1)  # warm-up
        app, port = create_app(ctx, process_teams=False), free_port()
        url = f"http://127.0.0.1:{port}"
        results: dict[str, list[dict[str, Any]]] = {}
        with serve_in_thread(app, port):
            shared = app.state.engine = EmbeddedEngine(ctx)
            tight = EmbeddedEngine(ctx, ctx.config.inference.model_copy(update={"max_adapters": 1}))
            for engine in (shared, tight):
                app.state.engine = engine
                drive(url, keys, ["alpha", "beta"], 1, 2)  # warm-up: base model and adapters loaded
            loads = tight.loads
            for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits every line alike
                results.setdefault("anchor", []).append(bare_loop(ctx, args.model, adapter, n))
                app.state.engine = shared
                for clients in (1, 4, 8):
                    results.setdefault(f"c{clients}", []).append(drive(url, keys, ["alpha"], clients, n))
                results.setdefault("alt", []).append(drive(url, keys, ["alpha", "beta"], 1, n))
                app.state.engine = tight
                results.setdefault("reload", []).append(drive(url, keys, ["alpha", "beta"], 1, n))
        r = {k: pooled(v) for k, v in results.items()}
        print(line("anchor: bare generate loop, same model+adapter", r["anchor"]))
        for clients in (1, 4, 8):
            print(line(f"tacit serve, {clients} client(s), one team", r[f"c{clients}"]))
        print(line("tacit serve, 1 client, alternating 2 teams", r["alt"]))
        print(line("  same, room for 1 adapter (reload each switch)", r["reload"])
              + f"  [{tight.loads - loads} adapter loads]")
        print(f"tacit serve, 1 client = {r['c1']['rate'] / r['anchor']['rate']:.2f} x the bare loop's completions/s; "
              f"8 clients = {r['c8']['rate'] / r['anchor']['rate']:.2f} x")
        print(f"alternating 2 teams: {r['alt']['rate'] / r['c1']['rate']:.2f} x one team's completions/s with both "
              f"adapters loaded, {r['reload']['rate'] / r['c1']['rate']:.2f} x when each switch reloads one")


if __name__ == "__main__":
    main()
