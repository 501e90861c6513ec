"""`tacit.toml`: loading, `${VAR}` interpolation and validation.

Every configuration error is raised as one `ConfigError` whose message names the file and
the field, so the command line can print one line and exit with status 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.base import NAME_PATTERN, SourceConfig
from connectors.registry import UnknownConnector, connector_class
from tacit.errors import UnknownSource, UnknownTeam

CONFIG_ENV = "TACIT_CONFIG"
DEFAULT_NAME = "tacit.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = NAME_PATTERN


class ConfigError(Exception):
    """A configuration that cannot be used; the message is one line for the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Strict):
    database_url: str = "sqlite:///.tacit/tacit.db"
    data_dir: Path = Path(".tacit")


class QueueConfig(_Strict):
    broker_url: str = "memory://"
    result_backend: str | None = None

    @property
    def eager(self) -> bool:
        return self.broker_url.startswith("memory://")


class ChunkingConfig(_Strict):
    max_tokens: int = Field(256, ge=16, le=32768)
    overlap_tokens: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap_smaller(self) -> ChunkingConfig:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class HygieneConfig(_Strict):
    scrub_secrets: bool = True
    scrub_emails: bool = True
    scrub_phone_numbers: bool = True
    strip_boilerplate: bool = True  # lines repeated across a source's documents, nav and footer noise
    near_duplicate_threshold: float = Field(0.85, gt=0.0, le=1.0)  # 1.0: exact duplicates only


class ExamplesConfig(_Strict):
    """Which kinds of training examples processing builds from a team's documents."""

    cpt: bool = True  # raw text: each chunk with its title and heading path
    structure_qa: bool = True  # QA from tables, properties, "key: value" lines and headings
    study: bool = True  # study data from every prose sentence (questions, restatements, cloze, links)


class TrainingConfig(_Strict):
    rank: Literal[8, 16, 32, 64, 128, 256] = 16
    alpha: int | None = None  # defaults to 2 * rank
    # 2e-3 with plain-text anchors: on the dev company (benchmarks/knowledge/README.md) 6/10
    # closed-book answers within the forgetting bound, where 1e-3 gave 1-3/10.
    learning_rate: float = Field(2e-3, gt=0)
    # A refresh that continues the active adapter starts from trained weights and usually sees a
    # small increment many times over: a lower rate keeps it from drifting (on the sample company,
    # half the rate gave 5/8 instead of 4/8 answers and 5 % instead of 7 % forgetting).
    continue_lr_scale: float = Field(0.5, gt=0, le=1)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1)
    # A refresh takes at least min_steps optimizer steps (more epochs over small data): a handful
    # of new facts needs repeated updates to be remembered (see training.service). On the dev
    # company 80 steps answered 32/50 questions where 40 answered 21-23/50, forgetting within bound.
    min_steps: int = Field(80, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # Anchor replay (training.anchors): general prompts with the base model's distilled answers,
    # anchor_ratio tokens of them per team token, their term weighted anchor_weight beside the team's.
    anchor_ratio: float = Field(0.5, ge=0.0, le=4.0)
    anchor_weight: float = Field(1.0, ge=0.0)
    anchor_text: bool = True  # anchors also as plain text, not only as chat answers (forgetting 0.231 -> 0.093)
    micro_batch_tokens: int = Field(1024, ge=64)
    seq_len: int = Field(512, ge=32)
    replay_ratio: float = Field(0.15, ge=0.0, le=0.9)
    min_new_tokens: int = Field(2000, ge=0)
    forgetting_bound: float = Field(0.10, ge=0.0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the CPU/GPU has it natively
    # The training steps run the decoder blocks compiled (torch.compile; training.recipe.should_compile):
    # auto: on a bf16 CPU, for a run long enough to repay compiling; on / off: always / never.
    compile: Literal["auto", "on", "off"] = "auto"
    seed: int = 0
    # Context distillation: the base model with the passage in its prompt teaches the adapter,
    # which sees only the question (training.distill).
    distill: bool = False
    distill_weight: float = Field(1.0, ge=0.0)
    # With distill on: this share of the distilled questions is also answered by the student
    # itself (no passage) before training, and those answers are distilled too (training.distill).
    distill_own_share: float = Field(0.5, ge=0.0, le=1.0)
    teacher: str = "none"  # none | self | an OpenAI-compatible base URL
    teacher_model: str | None = None
    teacher_api_key: SecretStr | None = None

    @field_validator("teacher")
    @classmethod
    def _teacher_kind(cls, value: str) -> str:
        value = value.strip()
        if value in ("none", "self") or value.startswith(("http://", "https://")):
            return value
        raise ValueError("teacher must be none, self or the http(s):// base URL of an OpenAI-compatible server")


class TeamConfig(_Strict):
    name: str = Field(pattern=_NAME)
    base_model: str = "smollm2-135m"
    description: str = ""
    chunking: ChunkingConfig = ChunkingConfig()
    hygiene: HygieneConfig = HygieneConfig()
    examples: ExamplesConfig = ExamplesConfig()
    training: TrainingConfig = TrainingConfig()
    eval_set: Path | None = None  # JSONL of {"question", "answer"} for the promotion gate
    principals: list[str] = []  # ACL principals that map a shared workspace's pages to this team
    record_conversations: bool = True  # store what the /v1 endpoint answers as `chat` interactions


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8400, ge=1, le=65535)
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_backlog: int = Field(10000, ge=1)
    public_url: str | None = None  # where vendors reach the webhook routes


class InferenceConfig(_Strict):
    """`[inference]`: who answers the OpenAI-compatible `/v1` routes of `tacit serve`.

    `embedded`: this process, with transformers + peft (one base model, adapters switched per
    request). `vllm`: a vLLM server started with `--enable-lora` and runtime LoRA updating; Tacit
    loads each promoted version into it and forwards `/v1/*` there.
    """

    backend: Literal["embedded", "vllm"] = "embedded"
    url: str = "http://inference:8000"  # the vLLM server (backend = "vllm")
    api_key: SecretStr | None = None  # vLLM's --api-key, if it was started with one
    adapters_path: str | None = None  # where vLLM sees <data_dir>/adapters (its volume mount)
    timeout_s: float = Field(120.0, gt=0)
    max_concurrency: int = Field(1, ge=1, le=256)  # generations running at once (embedded)
    max_queue: int = Field(16, ge=0, le=10000)  # requests waiting beyond those; more get 429
    max_adapters: int = Field(8, ge=1, le=256)  # adapters kept loaded (least recently used go)
    max_tokens: int = Field(1024, ge=1)  # the largest max_tokens a request may ask for
    default_max_tokens: int = Field(256, ge=1)


class TacitConfig(_Strict):
    storage: StorageConfig = StorageConfig()
    queue: QueueConfig = QueueConfig()
    api: ApiConfig = ApiConfig()
    inference: InferenceConfig = InferenceConfig()
    teams: list[TeamConfig] = []
    sources: list[SourceConfig] = []
    path: Path | None = Field(None, exclude=True)

    @field_validator("teams")
    @classmethod
    def _unique_teams(cls, teams: list[TeamConfig]) -> list[TeamConfig]:
        _unique([t.name for t in teams], "team")
        return teams

    @model_validator(mode="after")
    def _sources_known(self) -> TacitConfig:
        _unique([s.name for s in self.sources], "source")
        known = {t.name for t in self.teams}
        for i, source in enumerate(self.sources):
            if source.team not in known:
                raise ValueError(f"sources.{i}.team: unknown team {source.team!r}")
        return self

    def team(self, name: str) -> TeamConfig:
        for team in self.teams:
            if team.name == name:
                return team
        raise UnknownTeam(f"{self.path or DEFAULT_NAME}: no team named {name!r}")

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise UnknownSource(f"{self.path or DEFAULT_NAME}: no source named {name!r}")

    @property
    def data_dir(self) -> Path:
        """The data directory, relative to the configuration file's folder."""
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.storage.data_dir).resolve()

    @property
    def database_url(self) -> str:
        """The database URL; a relative SQLite path is taken from the configuration's folder."""
        url = self.storage.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            base = self.path.parent if self.path else Path.cwd()
            return prefix + str((base / url[len(prefix):]).resolve())
        return url


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r}")
        seen.add(name)


def interpolate(value: Any, where: str = "") -> Any:
    """Replace `${VAR}` (or `${VAR:-default}`) in every string with the environment's value."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}.{i}") for i, v in enumerate(value)]
    return value


def find_config(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    candidate = Path.cwd() / DEFAULT_NAME
    return candidate if candidate.exists() else None


def load_config(path: str | Path | None = None, *, required: bool = True) -> TacitConfig:
    """Read, interpolate and validate a configuration file.

    With no file and `required=False` the embedded defaults are returned.
    """
    found = find_config(path)
    if found is None:
        if required:
            raise ConfigError(f"{DEFAULT_NAME}: not found (run `tacit init`, or pass --config)")
        return TacitConfig()
    if not found.exists():
        raise ConfigError(f"{found}: file not found")
    try:
        raw = tomllib.loads(found.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{found}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{found}: cannot read: {exc}") from None
    return parse_config(raw, found)


def parse_config(raw: dict[str, Any], path: Path | None = None) -> TacitConfig:
    label = str(path or DEFAULT_NAME)
    try:
        data = interpolate(raw)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    try:
        config = TacitConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{label}: {_first_error(exc, data)}") from None
    config.path = path.resolve() if path else None
    _validate_sources(config, label)
    return config


def _validate_sources(config: TacitConfig, label: str) -> None:

    for i, source in enumerate(config.sources):
        try:
            cls = connector_class(source.kind)
        except UnknownConnector as exc:
            raise ConfigError(f"{label}: sources.{i}.kind: {exc}") from None
        try:
            cls.Settings.model_validate(source.settings)
        except ValidationError as exc:
            raise ConfigError(f"{label}: sources.{i} ({source.name}): {_first_error(exc)}") from None


def _first_error(exc: ValidationError, data: Any = None) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    # Name the source or team by its name where the location is an index.
    return f"{loc}: {msg}" if loc else msg
