"""The demo's report: Markdown with PNG plots, and the same figures in summary.json for scripts.

`summary` per team: qa_before, qa_after (answer match on the team's eval set, 0..1), qa_rag and
qa_adapter_rag (the same with the team's best BM25 chunks in the prompt: the prompt-stuffing
baseline), the mean token-F1 of each (qa_f1_before, qa_f1_after, qa_rag_f1, qa_adapter_rag_f1),
qa_loglik_before/after, forgetting_before, forgetting_after (general-probe loss), loss_curve,
adapter version; plus `leakage` = {"teams": [...], "matrix": [[...]]}, where row i is team i's
adapter and column j the change in team j's QA against the base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def plot_losses(teams: dict[str, dict[str, Any]], path: Path) -> bool:
    curves = {t: d.get("loss_curve") or [] for t, d in teams.items()}
    if not any(curves.values()):
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for team, curve in curves.items():
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, label=team)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per team (latest refresh)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_before_after(teams: dict[str, dict[str, Any]], before: str, after: str, title: str, ylabel: str,
                      path: Path, extra: list[tuple[str, str]] | None = None) -> bool:
    """Grouped bars per team: base model, team adapter, and any `extra` (key, label) series present."""
    names = [t for t, d in teams.items() if d.get(before) is not None and d.get(after) is not None]
    if not names:
        return False
    series = [(before, "base model"), (after, "team adapter")]
    series += [(k, label) for k, label in extra or [] if any(teams[n].get(k) is not None for n in names)]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(names))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], [teams[n].get(key) or 0.0 for n in names],
               width=width, label=label)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_leakage(leakage: dict[str, Any], path: Path) -> bool:
    teams, matrix = leakage.get("teams") or [], leakage.get("matrix") or []
    if not teams or not matrix:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(teams)))
    ax.set_xticklabels(teams)
    ax.set_yticks(range(len(teams)))
    ax.set_yticklabels(teams)
    ax.set_xlabel("eval set of team")
    ax.set_ylabel("adapter of team")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, _fmt(value, 2), ha="center", va="center", fontsize=9)
    ax.set_title("Change in QA match against the base model")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _trained_on(team: dict[str, Any]) -> str:
    if not team.get("examples"):
        return "nothing new"
    return (f"{team['examples']} examples ({_fmt(team.get('examples_new'))} new, "
            f"{_fmt(team.get('examples_replayed'))} replayed), {_fmt(team.get('trained_tokens'))} tokens"
            + (f" in {_fmt(team['refresh_s'], 0)} s ({_fmt(team.get('refresh_tokens_per_s'), 0)} tokens/s)"
               if team.get("refresh_s") else ""))


def team_figures(active: dict[str, Any], trained: dict[str, Any], result: dict[str, Any] | None = None,
                 refresh_s: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One team's row of `summary["teams"]` and its `summary["samples"]`, from adapter versions as
    `training.registry.show_version` gives them: `active` (may be {}), `trained` (the version the
    refresh `result` made, or the one reported on), the refresh's result (None: no refresh now) and
    its wall time (training and evaluation)."""
    if result is None:
        result = {"status": trained.get("status"), "reason": trained.get("reason"), "version": trained.get("version")}
    # The figures shown are the active adapter's: a rejected candidate's are in its reason.
    metrics = (active if result.get("status") == "rejected" and active else trained).get("metrics") or {}
    run = (trained.get("train_config") or {}).get("run") or {}
    counts = result.get("examples") or {}
    figures = {
        "status": result.get("status"), "reason": result.get("reason"),
        "adapter_version": active.get("version"), "trained_version": result.get("version"),
        "clean_retrain": result.get("clean_retrain"),
        "examples": (counts.get("new", 0) + counts.get("replayed", 0)) if counts else None,
        "examples_new": counts.get("new"), "examples_replayed": counts.get("replayed"),
        "trained_tokens": trained.get("trained_tokens") if result.get("version") else None,
        "loss_curve": run.get("loss_curve") or [],
        "qa_before": metrics.get("qa_before"), "qa_after": metrics.get("qa_after"),
        "qa_rag": metrics.get("qa_rag"), "qa_adapter_rag": metrics.get("qa_adapter_rag"),
        "qa_f1_before": metrics.get("qa_f1_before"), "qa_f1_after": metrics.get("qa_f1_after"),
        "qa_rag_f1": metrics.get("qa_rag_f1"), "qa_adapter_rag_f1": metrics.get("qa_adapter_rag_f1"),
        "qa_loglik_before": metrics.get("qa_logprob_before"),
        "qa_loglik_after": metrics.get("qa_logprob_after"),
        "forgetting_before": metrics.get("probe_nll_before"),
        "forgetting_after": metrics.get("probe_nll_after"), "forgetting": metrics.get("forgetting"),
        "leakage": metrics.get("leakage") or {},
    }
    if result.get("version") and refresh_s:
        # A refresh's speed: the tokens trained over its whole wall time, evaluation included.
        figures |= {"refresh_s": round(refresh_s, 1), "train_s": run.get("wall_s"),
                    "refresh_tokens_per_s": round((figures["trained_tokens"] or 0) / refresh_s, 1)}
    samples = [{"question": a["question"], "expected": a["expected"], "base": a["base"],
                "adapter": a["candidate"], "base_right": a.get("base_right"),
                "adapter_right": a.get("candidate_right"), "rag": a.get("rag"), "rag_right": a.get("rag_right")}
               for a in (metrics.get("qa_answers") or [])]
    return figures, samples


def leakage_matrix(teams: dict[str, dict[str, Any]], names: list[str]) -> list[list[float]]:
    """Row i: team i's adapter; column j: the change in team j's QA match against the base model."""
    matrix = []
    for a in names:
        d = teams[a]
        matrix.append([round((d["qa_after"] or 0) - (d["qa_before"] or 0), 3) if a == b
                       else (d["leakage"].get(b) or {}).get("match_delta") or 0.0 for b in names])
    return matrix


def write_report(summary: dict[str, Any], directory: Path) -> Path:
    """Write summary.json, the PNG plots and report.md under `directory`; return report.md."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    teams: dict[str, dict[str, Any]] = summary.get("teams", {})
    plots = {
        "loss.png": plot_losses(teams, directory / "loss.png"),
        "qa.png": plot_before_after(teams, "qa_before", "qa_after",
                                    "Team QA: base model, team adapter, and with retrieved chunks (RAG)",
                                    "answer match (eval set)", directory / "qa.png",
                                    extra=[("qa_rag", "base + RAG"), ("qa_adapter_rag", "adapter + RAG")]),
        "forgetting.png": plot_before_after(teams, "forgetting_before", "forgetting_after",
                                            "General probe: base model vs team adapter",
                                            "general probe loss (lower is better)", directory / "forgetting.png"),
        "leakage.png": plot_leakage(summary.get("leakage") or {}, directory / "leakage.png"),
    }
    lines = [f"# {summary.get('company', 'Tacit')}: what each team's adapter learned", ""]
    if "run" in summary:
        lines += [f"Run {summary['run']} of the demo, base model `{summary.get('base_model')}`, "
                  f"{_fmt(summary.get('duration_s'), 0)} s in all.", ""]
    else:
        lines += [f"From the adapter registry at {summary.get('generated_at', '-')}, base model "
                  f"`{summary.get('base_model')}`.", ""]
    if summary.get("changes"):
        lines += ["## What changed since the last run", ""]
        lines += [f"- {c}" for c in summary["changes"]] + [""]
    lines += ["## Teams", "", "QA match: share of the eval questions answered acceptably (any alias, or its core, "
              "contained in the reply, or token-F1 ≥ 0.8); F1 in brackets. RAG: the same model with the team's "
              "three best-matching chunks (BM25) in its prompt — the prompt-stuffing baseline.", "",
              "| team | adapter | QA match before → after | base + RAG | adapter + RAG |"
              " answer log-likelihood before → after | general probe loss before → after | trained now on | status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for team, d in teams.items():
        lines.append(
            f"| {team} | v{_fmt(d.get('adapter_version'))} | {_fmt(d.get('qa_before'), 2)} → {_fmt(d.get('qa_after'), 2)}"
            f" ({_fmt(d.get('qa_f1_before'), 2)} → {_fmt(d.get('qa_f1_after'), 2)})"
            f" | {_fmt(d.get('qa_rag'), 2)} ({_fmt(d.get('qa_rag_f1'), 2)})"
            f" | {_fmt(d.get('qa_adapter_rag'), 2)} ({_fmt(d.get('qa_adapter_rag_f1'), 2)})"
            f" | {_fmt(d.get('qa_loglik_before'))} → {_fmt(d.get('qa_loglik_after'))}"
            f" | {_fmt(d.get('forgetting_before'))} → {_fmt(d.get('forgetting_after'))}"
            f" | {_trained_on(d)}"
            f" | {d.get('status', '-')}{' (clean retrain)' if d.get('clean_retrain') else ''} |")
    lines.append("")
    lines += [f"- **{team}** {d.get('status', '-')}: {d.get('reason') or '-'}" for team, d in teams.items()] + [""]
    for name, title in (("qa.png", "Team QA"), ("forgetting.png", "Forgetting"), ("loss.png", "Training loss"),
                        ("leakage.png", "Cross-team leakage")):
        if plots[name]:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
    samples = summary.get("samples") or {}
    if samples:
        lines += ["## Answers", "", "Each team's eval questions (worded unlike its documents), answered greedily "
                  "by the base model, by the team's adapter, and by the base model with retrieved chunks; ✓ where a person "
                  "would accept the answer.", ""]
        for team, items in samples.items():
            lines += [f"### {team}", ""]
            for item in items:
                mark = {True: " ✓", False: " ✗"}
                lines += [f"**Q:** {item['question']}  ", f"*expected:* {item['expected']}  ",
                          f"*base model{mark.get(item.get('base_right'), '')}:* {item['base']}  ",
                          f"*team adapter{mark.get(item.get('adapter_right'), '')}:* {item['adapter']}  "]
                if item.get("rag") is not None:
                    lines += [f"*base model + RAG{mark.get(item.get('rag_right'), '')}:* {item['rag']}"]
                lines += [""]
    if summary.get("forgotten"):
        lines += ["## Forgetting on request", ""]
        lines += [f"- {f}" for f in summary["forgotten"]] + [""]
    report = directory / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
