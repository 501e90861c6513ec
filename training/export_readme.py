"""What an exported adapter says about itself: the base model it needs and how to serve it.

A PEFT adapter is useless without the exact base weights it was trained on; its
`adapter_config.json` names them in `base_model_name_or_path`, which vLLM and LoRAX read. Tacit
trains from a local directory, so the export rewrites that field to the Hugging Face id when the
base model has one. vLLM usage follows https://docs.vllm.ai/en/latest/features/lora.html
(`--enable-lora`, `--lora-modules name=path`, `--max-lora-rank`).
"""

from __future__ import annotations

from typing import Any

from training.base_models import hub_id


def peft_base_model(base_model: str, current: str | None) -> str:
    """The value for `base_model_name_or_path`: the hub id when known, else the configured name."""
    return hub_id(base_model) or current or base_model


def export_readme(info: dict[str, Any], base: str) -> str:
    """A README.md for the export folder (`info` is what `tacit.json` holds)."""
    name = f"{info['team']}-v{info['version']}"
    known = hub_id(info["base_model"]) is not None
    needs = (f"`{base}` (Hugging Face id; the weights must match exactly: base model hash "
             f"`{info.get('base_model_hash') or 'unknown'}`)" if known else
             f"the base model Tacit calls `{info['base_model']}`, which has no Hugging Face id: serve the same "
             f"weights from a local folder (hash `{info.get('base_model_hash') or 'unknown'}`) and pass that folder "
             "as the model")
    model_arg = base if known else "/path/to/base-model"
    lines = [
        f"# Tacit adapter: team {info['team']}, version {info['version']}",
        "",
        f"A LoRA adapter (rank {info['rank']}, alpha {info['alpha']}, modules {', '.join(info['target_modules'])}).",
        "",
        "## Base model",
        "",
        f"This adapter needs {needs}.",
        "",
        "## Serving it with vLLM",
        "",
        "```sh",
        f"vllm serve {model_arg} --enable-lora --max-lora-rank {max(info['rank'], 8)} \\",
        f"    --lora-modules {name}=$PWD",
        "```",
        "",
        f"Then ask for `\"model\": \"{name}\"` on `/v1/chat/completions`. Or load it at run time with",
        f"`POST /v1/load_lora_adapter {{\"lora_name\": \"{name}\", \"lora_path\": \"$PWD\"}}`",
        "(needs `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`).",
        "",
    ]
    if info.get("warning"):
        lines += ["## Warning", "", info["warning"], ""]
    return "\n".join(lines)
