"""Hygiene before anything becomes a training example: scrubbing, boilerplate, duplicates.

* **Scrubbing** replaces secrets (private keys, API keys and tokens of well-known shapes,
  `password: …` values, credentials in URLs) and personal data (e-mail addresses, phone
  numbers) with placeholders such as `[SECRET]` and `[EMAIL]`. What is scrubbed is set per
  team (`[teams.hygiene]`).
* **Boilerplate**: lines that repeat across many documents of one source (navigation bars,
  footers, banners) are found with a bounded heavy-hitters summary (Misra–Gries) that is kept
  per source between runs, plus a short list of well-known noise lines.
* **Duplicates**: a document whose MinHash signature collides in a locality-sensitive-hashing
  band with one seen before in the same run and team is a near duplicate (threshold per team;
  exact copies always collide). Signatures are computed with numpy over word 5-shingles, and
  the index keeps only the band keys (compact sorted arrays), so it costs a few bytes per
  document rather than the documents themselves.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tacit.config import HygieneConfig

# --------------------------------------------------------------------------- scrubbing
_KEYS = (r"password|passwd|passphrase|pwd|secret|client[_ -]?secret|api[_ -]?key|apikey|access[_ -]?key"
         r"|secret[_ -]?key|auth[_ -]?token|access[_ -]?token|refresh[_ -]?token|token|private[_ -]?key"
         r"|accountkey|sharedaccesskey|connection[_ -]?string")
_PLACEHOLDER = re.compile(r"^(?:\[[A-Z_ ]+\]|<[^>]*>|\$\{[^}]*\}|\*+|x+|\.\.\.|none|null|n/a|redacted)$", re.I)

#: Token shapes documented by their issuers (prefixes are how secret scanners recognise them).
_TOKEN_SHAPES = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),  # GitLab
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),  # Slack
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    re.compile(r"\bsk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}\b"),  # OpenAI / Anthropic style
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),  # Stripe
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"\b(?:secret|ntn)_[A-Za-z0-9]{32,}\b"),  # Notion integration tokens
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{16,}"),  # webhook signing secrets
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face
    re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
]
_ANY_TOKEN = re.compile("|".join(f"(?:{shape.pattern})" for shape in _TOKEN_SHAPES))
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.S)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/-]{16,}=*")
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/:@]+:[^\s/@]+@")
_ASSIGNMENT = re.compile(
    rf"(?i)((?<![A-Za-z0-9])(?:{_KEYS})(?![A-Za-z0-9])[\"']?\s*(?::|=|=>|->)\s*)([\"']?)(?![<\[{{$*])([^\s\"'`,;]{{4,}})(\2)")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,5}"
    r"|\(\d{3}\)[ ]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w-])")

SECRET, EMAIL, PHONE, PRIVATE_KEY = "[SECRET]", "[EMAIL]", "[PHONE]", "[PRIVATE KEY]"


def scrub(text: str, config: HygieneConfig, counts: Counter[str] | None = None) -> str:
    """`text` with secrets and personal data replaced by placeholders (as configured).

    `counts`, when given, is increased by what was replaced, by kind.
    """
    if not text:
        return text
    tally: Counter[str] = counts if counts is not None else Counter()
    if config.scrub_secrets:
        text, n = _PRIVATE_KEY.subn(PRIVATE_KEY, text)
        tally["private_key"] += n
        text, n = _URL_CREDENTIALS.subn(lambda m: m.group(1) + "[CREDENTIALS]@", text)
        tally["url_credentials"] += n
        text, n = _ANY_TOKEN.subn(SECRET, text)
        tally["token"] += n
        text, n = _BEARER.subn(lambda m: f"{m.group(1)} {SECRET}", text)
        tally["token"] += n

        def assignment(m: re.Match[str]) -> str:
            if _PLACEHOLDER.match(m.group(3)):
                return m.group(0)
            tally["password"] += 1
            return f"{m.group(1)}{m.group(2)}{SECRET}{m.group(4)}"

        text = _ASSIGNMENT.sub(assignment, text)
    if config.scrub_emails:
        text, n = _EMAIL.subn(EMAIL, text)
        tally["email"] += n
    if config.scrub_phone_numbers:
        def phone(m: re.Match[str]) -> str:
            if sum(c.isdigit() for c in m.group(0)) < 9:
                return m.group(0)
            tally["phone"] += 1
            return PHONE

        text = _PHONE.sub(phone, text)
    return text


# --------------------------------------------------------------------------- boilerplate
_NOISE = re.compile(
    r"(?i)^(?:skip to (?:main )?content|back to top|table of contents|edit this page|print this page"
    r"|cookie (?:settings|policy|preferences)|accept (?:all )?cookies|all rights reserved\.?"
    r"|(?:copyright )?(?:©|\(c\)) ?\d{4}.*|.*\ball rights reserved\.?|powered by [\w .-]{1,40}"
    r"|subscribe to (?:our|the) newsletter.*|share (?:this|on) (?:page|post|twitter|linkedin|facebook|x)\b.*"
    r"|unsubscribe.*|sent from my (?:iphone|android|mobile).*|this (?:e-?mail|message) is confidential.*)$")
_NAV = re.compile(r"^(?:\s*\[[^\]\n]{1,40}\]\([^)\n]*\)\s*[|·•/>»-]?\s*){3,}$")
_LIST_MARK = re.compile(r"^\s*(?:[-*+>]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^ {0,3}(?:`{3,}|~{3,})")
_SPACES = re.compile(r"\s+")
_PROPERTY = re.compile(r"^(?:[-*+]\s+)?(?:\*\*|__)?[A-Za-z][\w ()/&.'+-]{0,48}?(?:\*\*|__)?\s*:(?:\*\*|__)?\s+\S")

#: A line repeated in at least this many documents, and in this share of a source's documents,
#: is boilerplate.
BOILERPLATE_MIN_DOCS = 3
BOILERPLATE_SHARE = 0.5


def _line_key(line: str) -> str | None:
    """A stable key of a line that may be boilerplate, or None for lines that never are
    (headings, table rules, fences, very short or very long lines)."""
    stripped = line.strip()
    if not (6 <= len(stripped) <= 240) or stripped.startswith("#") or set(stripped) <= set("|-: =*_"):
        return None
    if _PROPERTY.match(stripped):  # "Status: Done" repeats across rows of a database, but is a fact
        return None
    norm = _SPACES.sub(" ", _LIST_MARK.sub("", stripped)).lower()
    return f"{zlib.crc32(norm.encode()):08x}"


def _prose_lines(text: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, line) of every line outside fenced code."""
    pos = 0
    in_code = False
    for line in text.split("\n"):
        end = pos + len(line)
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            yield pos, end, line
        pos = end + 1


@dataclass
class LineStats:
    """How many documents of a source contain each frequent line (Misra–Gries heavy hitters,
    so the summary stays at most `2 * capacity` entries however large the source grows)."""

    docs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    capacity: int = 512

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> LineStats:
        state = state or {}
        return cls(int(state.get("docs", 0)), {str(k): int(v) for k, v in (state.get("lines") or {}).items()})

    def to_state(self) -> dict[str, Any]:
        return {"docs": self.docs, "lines": dict(self.counts)}

    def add_document(self, text: str) -> None:
        keys = {k for _, _, line in _prose_lines(text) if (k := _line_key(line))}
        self.docs += 1
        for key in keys:
            self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.counts) > 2 * self.capacity:
            # Subtract the (capacity+1)-th largest count from all and drop what is left at zero:
            # the classic decrement step, done in bulk (each count is under by at most docs/capacity).
            cut = sorted(self.counts.values(), reverse=True)[self.capacity]
            self.counts = {k: v - cut for k, v in self.counts.items() if v > cut}

    def threshold(self) -> float:
        return max(BOILERPLATE_MIN_DOCS, BOILERPLATE_SHARE * self.docs)

    def is_boilerplate(self, key: str) -> bool:
        return self.counts.get(key, 0) >= self.threshold()


def strip_boilerplate(text: str, stats: LineStats | None, counts: Counter[str] | None = None) -> str:
    """`text` without well-known noise lines and without lines `stats` says repeat across the
    source (code blocks are left alone)."""
    if not text:
        return text
    drop: list[tuple[int, int]] = []
    for start, end, line in _prose_lines(text):
        stripped = line.strip()
        if not stripped:
            continue
        bare = _LIST_MARK.sub("", stripped)
        if (len(stripped) <= 160 and (_NOISE.match(bare) or _NAV.match(stripped))) or (
            stats is not None and (key := _line_key(line)) is not None and stats.is_boilerplate(key)
        ):
            drop.append((start, end))
    if not drop:
        return text
    if counts is not None:
        counts["boilerplate_lines"] += len(drop)
    parts = []
    pos = 0
    for start, end in drop:
        parts.append(text[pos:start])
        pos = min(len(text), end + 1)
    parts.append(text[pos:])
    return re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip("\n")


# --------------------------------------------------------------------------- near duplicates
NUM_PERM = 128
SHINGLE = 5
_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20240601)
_A = _rng.integers(1, 1 << 61, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 1 << 61, size=NUM_PERM, dtype=np.uint64)
_NON_WORD = re.compile(r"[\W_]+")
_P = np.uint64(1099511628211)  # odd, so invertible modulo 2**64
_P_INV = np.uint64(pow(1099511628211, -1, 1 << 64))


def shingle_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the word 5-shingles of `text` (lower-cased, punctuation ignored), with
    a polynomial rolling hash computed in one vectorised pass."""
    norm = _NON_WORD.sub(" ", text.lower()).strip()
    if not norm:
        return np.zeros(0, dtype=np.uint64)
    data = np.frombuffer(norm.encode("utf-8"), dtype=np.uint8).astype(np.uint64) + np.uint64(1)
    n = len(data)
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(n, _P, dtype=np.uint64))
        powers = np.concatenate(([np.uint64(1)], powers[:-1]))
        inv = np.cumprod(np.full(n, _P_INV, dtype=np.uint64))
        inv = np.concatenate(([np.uint64(1)], inv[:-1], [inv[-1]]))
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(data * powers)))
        spaces = np.flatnonzero(data == np.uint64(ord(" ") + 1))
        starts = np.concatenate(([0], spaces + 1))
        ends = np.concatenate((spaces, [n]))  # end of each word
        if len(starts) <= SHINGLE:
            s, e = np.array([0]), np.array([n])
        else:
            s, e = starts[: len(starts) - SHINGLE + 1], ends[SHINGLE - 1:]
        return (prefix[e] - prefix[s]) * inv[s]


def minhash(text: str) -> np.ndarray:
    """A MinHash signature (NUM_PERM values) of the word shingles of `text`."""
    shingles = np.unique(shingle_hashes(text))
    sig = np.full(NUM_PERM, np.iinfo(np.uint64).max, dtype=np.uint64)
    if len(shingles) == 0:
        return sig
    x = shingles & _MERSENNE
    with np.errstate(over="ignore"):
        for i in range(0, len(x), 2048):
            block = x[i:i + 2048]
            values = (_A[:, None] * block[None, :] + _B[:, None]) >> np.uint64(3)
            np.minimum(sig, values.min(axis=1), out=sig)
    return sig


def lsh_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """Bands and rows per band whose S-curve best separates pairs around `threshold`
    (the false-positive and false-negative areas weighted equally)."""
    xs = np.linspace(0.0, 1.0, 201)
    best, best_err = (1, num_perm), float("inf")
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - xs ** rows) ** bands
        below = xs < threshold
        err = float(np.trapezoid(np.where(below, p, 0.0), xs) + np.trapezoid(np.where(~below, 1.0 - p, 0.0), xs))
        if err < best_err:
            best, best_err = (bands, rows), err
    return best


class DuplicateIndex:
    """Band keys of the documents seen so far; `check_and_add` says whether one collides.

    Keys live in a few sorted numpy arrays merged like a log-structured tree, so memory is
    16 bytes per band per document and lookups are binary searches.
    """

    def __init__(self, threshold: float) -> None:
        self.exact_only = threshold >= 1.0
        self.bands, self.rows = (0, 0) if self.exact_only else lsh_params(threshold)
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending: dict[int, int] = {}
        with np.errstate(over="ignore"):
            mults = np.random.default_rng(7).integers(1, 1 << 63, size=max(self.rows, 1), dtype=np.uint64)
        self._mults = mults | np.uint64(1)

    def keys(self, text: str) -> list[int]:
        norm = _NON_WORD.sub(" ", text.lower()).strip().encode()
        exact = (zlib.crc32(norm) << 31) | (len(norm) & 0x7FFFFFFF)
        keys = [exact << 1]  # 64 bits; the low bit tells exact keys from band keys
        if not self.exact_only:
            sig = minhash(text)[: self.bands * self.rows].reshape(self.bands, self.rows)
            with np.errstate(over="ignore"):
                bands = (sig * self._mults[None, :]).sum(axis=1) + np.arange(self.bands, dtype=np.uint64)
            keys.extend(int(b) | 1 for b in bands)
        return keys

    def find(self, keys: list[int]) -> int | None:
        for key in keys:
            hit = self._pending.get(key)
            if hit is not None:
                return hit
            k = np.uint64(key)
            for arr, ids in self._runs:
                i = int(np.searchsorted(arr, k))
                if i < len(arr) and arr[i] == k:
                    return int(ids[i])
        return None

    def add(self, keys: list[int], ident: int) -> None:
        for key in keys:
            self._pending.setdefault(key, ident)
        if len(self._pending) >= 4096:
            arr = np.fromiter(self._pending.keys(), dtype=np.uint64, count=len(self._pending))
            ids = np.fromiter(self._pending.values(), dtype=np.int64, count=len(self._pending))
            self._pending = {}
            # Merge runs of similar size (amortised O(log n) merges per key).
            while self._runs and len(self._runs[-1][0]) <= len(arr):
                a2, i2 = self._runs.pop()
                arr, ids = np.concatenate((a2, arr)), np.concatenate((i2, ids))
            order = np.argsort(arr, kind="stable")
            self._runs.append((arr[order], ids[order]))

    def check_and_add(self, text: str, ident: int) -> int | None:
        """The id of an earlier near duplicate of `text`, or None (then `text` is added)."""
        keys = self.keys(text)
        hit = self.find(keys)
        if hit is None:
            self.add(keys, ident)
        return hit
