"""Knowledge from prose: does a team's adapter answer questions about its own wiki?

The held-out prose company (`benchmarks/knowledge/heldout/`, never used to choose a default) is
imported per team with `tacit import` (the CLI, as a user runs it: processing follows), then each
team's adapter is trained and evaluated by `training.service.refresh_adapter`, once per method:

* `raw`: raw text only (examples.cpt);
* `structure`: + QA from structure (examples.structure_qa, today's behaviour);
* `study`: + study data from every prose sentence (examples.study);
* `distill`: study + context distillation (training.distill).

Everything else is the team's default configuration (`min_new_tokens = 0`: a first adapter is
always due). Per team and method, all measured in the same run: base model (closed book), base +
RAG (the team's best BM25 chunks in the prompt: the ceiling the adapter competes with), adapter,
adapter + RAG — answer match (`training.matching`) and mean token-F1 —, forgetting (against the
gate's bound), cross-team leakage (the largest rise of another team's match) and the gate's verdict.
Base-model figures are cached by (weights, data), so they are measured once and shared by methods.

    nice -n 5 python benchmarks/bench_knowledge.py                      # held-out, all methods
    python benchmarks/bench_knowledge.py --methods study --teams finance
    python benchmarks/bench_knowledge.py --dev                          # the dev company
    python benchmarks/bench_knowledge.py --model tiny-random --dev      # a smoke run

Results: benchmarks/results/knowledge-<company>-<model>.json (written after every team, so an
interrupted run keeps what it measured), with each eval question's closed-book answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TACIT_MODELS_DIR", str(ROOT / ".tacit" / "models"))
os.environ.setdefault("TACIT_SECRET_KEY", "ZmRlYWRiZWVmZGVhZGJlZWZkZWFkYmVlZmRlYWRiZWU=")

from tacit.config import load_config  # noqa: E402
from tacit.context import Context  # noqa: E402
from training import registry, service  # noqa: E402

DATA = ROOT / "benchmarks" / "knowledge"
METHODS: dict[str, dict[str, bool]] = {
    "raw": {"cpt": True, "structure_qa": False, "study": False, "distill": False},
    "structure": {"cpt": True, "structure_qa": True, "study": False, "distill": False},
    "study": {"cpt": True, "structure_qa": True, "study": True, "distill": False},
    "distill": {"cpt": True, "structure_qa": True, "study": True, "distill": True},
}


def say(text: str = "") -> None:
    print(text, flush=True)


def company_teams(folder: Path) -> list[str]:
    return sorted(p.name.removesuffix(".eval.jsonl") for p in folder.glob("*.eval.jsonl"))


def write_config(root: Path, folder: Path, teams: list[str], model: str, method: dict[str, bool],
                 overrides: list[str] = ()) -> Path:
    """Every team of the company (their eval sets measure leakage), one webhook source per team;
    `overrides` are extra `key = value` lines of every team's `[teams.training]` (trials of a default)."""
    lines = ["[storage]", f'database_url = "sqlite:///{root}/tacit.db"', f'data_dir = "{root}/.tacit"', "",
             "[queue]", 'broker_url = "memory://"', ""]
    for team in teams:
        lines += ["[[teams]]", f'name = "{team}"', f'base_model = "{model}"',
                  f'eval_set = "{folder / f"{team}.eval.jsonl"}"', "", "[teams.examples]",
                  f"cpt = {str(method['cpt']).lower()}", f"structure_qa = {str(method['structure_qa']).lower()}",
                  f"study = {str(method['study']).lower()}", "", "[teams.training]", "min_new_tokens = 0",
                  f"distill = {str(method['distill']).lower()}", *overrides, ""]
    for team in teams:
        lines += ["[[sources]]", f'name = "wiki-{team}"', 'kind = "webhook"', f'team = "{team}"', ""]
    path = root / "tacit.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def tacit_import(config: Path, file: Path, source: str) -> str:
    """`tacit import FILE --source S`, the command a user runs (processing follows in eager mode)."""
    done = subprocess.run([sys.executable, "-m", "tacit.cli", "--config", str(config), "import", str(file),
                           "--source", source], capture_output=True, text=True, env=dict(os.environ), cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"tacit import {file.name} failed: {done.stderr.strip()[-2000:]}")
    return " ".join(done.stdout.split())


def figures(result: dict[str, Any], wall_s: float, forgetting_bound: float) -> dict[str, Any]:
    m = result.get("metrics") or {}
    leaks = [v["match_delta"] for v in (m.get("leakage") or {}).values() if v.get("match_delta") is not None]
    return {
        "status": result.get("status"), "reason": result.get("reason"), "version": result.get("version"),
        "n": m.get("qa_n"), "base": m.get("qa_before"), "rag": m.get("qa_rag"), "adapter": m.get("qa_after"),
        "adapter_rag": m.get("qa_adapter_rag"), "base_f1": m.get("qa_f1_before"), "rag_f1": m.get("qa_rag_f1"),
        "adapter_f1": m.get("qa_f1_after"), "adapter_rag_f1": m.get("qa_adapter_rag_f1"),
        "forgetting": m.get("forgetting"), "forgetting_bound": forgetting_bound,
        "leakage_max": max(leaks) if leaks else None, "examples": result.get("examples"),
        "train_steps": (result.get("train") or {}).get("steps"),
        "train_s": (result.get("train") or {}).get("wall_s"), "wall_s": round(wall_s, 1),
    }


def answers(ctx: Context, team: str, version: int | None) -> list[dict[str, Any]]:
    """Each eval question with the adapter's closed-book answer and which columns got it right."""
    if version is None:
        return []
    with ctx.session() as session:
        metrics = registry.get_version(session, ctx.team_row(session, team), version).metrics or {}
    return [{"question": a["question"], "expected": a["expected"], "adapter": a["candidate"],
             "adapter_right": a["candidate_right"], "rag_right": a["rag_right"],
             "adapter_rag_right": a["adapter_rag_right"]} for a in metrics.get("qa_answers", [])]


def run_method(name: str, folder: Path, all_teams: list[str], teams: list[str], model: str,
               results: dict[str, Any], save: Any, overrides: list[str] = ()) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-knowledge-{name}-") as tmp:
        root = Path(tmp)
        config = write_config(root, folder, all_teams, model, METHODS[name], overrides)
        for team in teams:
            start = time.perf_counter()
            say(f"  [{name}] {team}: {tacit_import(config, folder / f'{team}.jsonl', f'wiki-{team}')} "
                f"({time.perf_counter() - start:.0f} s)")
        ctx = Context(load_config(config))
        for team in teams:
            start = time.perf_counter()
            result = service.refresh_adapter(ctx, team, force=True)
            row = figures(result, time.perf_counter() - start, ctx.config.team(team).training.forgetting_bound)
            row["answers"] = answers(ctx, team, result.get("version"))
            results["runs"].setdefault(name, {})[team] = row
            say(f"  [{name}] {team}: {row['status']} in {row['wall_s']} s — {row['reason']}")
            save()


def _pct(v: Any) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def print_table(results: dict[str, Any]) -> None:
    say(f"\nKnowledge from prose: {results['company']} company, {results['model']}, device {results['device']}")
    say("match (mean token-F1) on each team's eval set; RAG = base model with the team's top-3 BM25 chunks")
    say(f"{'method':<10}{'team':<15}{'n':>3}  {'base':>15}{'base+RAG':>15}{'adapter':>15}{'adapter+RAG':>15}"
        f"{'ad/RAG':>8}{'forget':>8}{'leak':>7}  status")
    for method, teams in results["runs"].items():
        for team, r in teams.items():
            def cell(key: str, r: dict[str, Any] = r) -> str:
                f1 = r.get(f"{key}_f1")
                return f"{_pct(r[key])} ({'-' if f1 is None else f'{f1:.2f}'})"
            ratio = "-" if not r["rag"] or r["adapter"] is None else f"{r['adapter'] / r['rag']:.2f}"
            forget = "-" if r["forgetting"] is None else f"{r['forgetting']:.3f}"
            leak = "-" if r["leakage_max"] is None else f"{r['leakage_max']:+.2f}"
            say(f"{method:<10}{team:<15}{r['n'] or 0:>3}  {cell('base'):>15}{cell('rag'):>15}{cell('adapter'):>15}"
                f"{cell('adapter_rag'):>15}{ratio:>8}{forget:>8}{leak:>7}  {r['status']}")
        rows = [r for r in teams.values() if r["n"]]
        if rows:
            total = sum(r["n"] for r in rows)
            mean = {k: sum((r[k] or 0) * r["n"] for r in rows) / total
                    for k in ("base", "rag", "adapter", "adapter_rag")}
            ratio = mean["adapter"] / mean["rag"] if mean["rag"] else float("nan")
            say(f"{method:<10}{'all':<15}{total:>3}  {_pct(mean['base']):>15}{_pct(mean['rag']):>15}"
                f"{_pct(mean['adapter']):>15}{_pct(mean['adapter_rag']):>15}{ratio:>8.2f}")
            say(f"{'':<10}targets: adapter >= 75 % of RAG: {'met' if ratio >= 0.75 else 'NOT met'}; "
                f"adapter >= 50 % of all: {'met' if mean['adapter'] >= 0.5 else 'NOT met'}; forgetting within "
                f"bound: {'met' if all((r['forgetting'] or 0) <= r['forgetting_bound'] for r in rows) else 'NOT met'}; "
                f"no leakage (<= +0.125): "
                f"{'met' if all((r['leakage_max'] or 0) <= 0.125 for r in rows) else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="the dev company (benchmarks/knowledge/dev) instead")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--teams", default="", help="comma-separated (default: every team of the company)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="auto", help="TACIT_DEVICE for training and evaluation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a [teams.training] setting for every team, e.g. --set learning_rate=2e-3 (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="results file (default under benchmarks/results/)")
    args = parser.parse_args()

    company = "dev" if args.dev else "heldout"
    folder = DATA / company
    all_teams = company_teams(folder)
    teams = [t for t in args.teams.split(",") if t] or all_teams
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS] + [t for t in teams if t not in all_teams]
    if unknown:
        parser.error(f"unknown method or team: {', '.join(unknown)}")
    bad = [kv for kv in args.set if "=" not in kv or not kv.split("=", 1)[0].strip()]
    if bad:
        parser.error(f"--set takes KEY=VALUE, not {bad[0]!r}")
    overrides = [f"{k.strip()} = {v.strip()}" for k, v in (kv.split("=", 1) for kv in args.set)]
    if args.device != "auto":
        os.environ["TACIT_DEVICE"] = args.device
    out = args.json or ROOT / "benchmarks" / "results" / f"knowledge-{company}-{args.model}.json"
    results: dict[str, Any] = {"company": company, "model": args.model, "device": args.device,
                               "methods": {m: METHODS[m] for m in methods}, "teams": teams, "settings": overrides, "runs": {},
                               "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")

    start = time.perf_counter()
    for name in methods:
        say(f"method {name}: {METHODS[name]}")
        run_method(name, folder, all_teams, teams, args.model, results, save, overrides)
    results["wall_s"] = round(time.perf_counter() - start, 1)
    save()
    print_table(results)
    say(f"\n{results['wall_s']} s in all; results in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
