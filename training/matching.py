"""Answer matching that a person would accept.

An eval item has one or more acceptable answers (aliases: `answer` plus `answers`). A generated
reply counts as right when, for some alias,

* the alias is contained in the reply after normalisation (SQuAD-style: lower case, punctuation
  to spaces, no articles, number words as digits, "100,000" as "100000", leading zeros dropped, a
  clock time or a decimal one token: "02:15" as "2h15"), or
* the alias's *core* is: its tokens minus connecting words ("at", "in", "within", "every" ...),
  units ("days", "percent", "euros" ...) and words the question already says ("Which catalog
  ...?" makes "catalog" uninformative in "the Atlas catalog"). Every core token must appear
  in the reply as a whole word, in any order, and the reply must not name another unit of the same kind ("5 hours" for
  "5 minutes"). "the answer is 35" is right for "35 days";
  "the catalog is called Atlas" is right for "the Atlas catalog"; "36 days" is not, nor is
  "Atlas" for "Atlas Grove". An alias whose core would be empty (all units) needs its full form; or
* the token-F1 between reply and alias is at least `F1_THRESHOLD` (a near-verbatim reply that
  misses one small word).

Containment runs one way only, alias inside reply: a reply contained in the alias ("days" in
"35 days") says nothing. Per item the F1 reported is the best over its aliases.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

F1_THRESHOLD = 0.8

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i >= 2}
_NUMBERS = {w: i for i, w in enumerate(_ONES)}
_ARTICLES = {"a", "an", "the"}
# Words that connect the parts of an answer without carrying it.
_CONNECTORS = {"at", "in", "on", "of", "by", "for", "to", "within", "every", "each", "per", "after", "before",
               "than", "longer", "more", "less", "up", "above", "below", "over", "under", "and", "or", "is",
               "are", "when", "it", "its", "our", "we", "from", "with", "about", "around", "only"}
# Units and generic nouns an answer may state or leave implied.
_UNITS = {"second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month",
          "months", "year", "years", "business", "working", "percent", "pct", "euro", "euros", "eur", "dollar",
          "dollars", "usd", "gb", "tb", "mb", "utc", "am", "pm", "time", "times", "o", "clock"}
_FAMILIES = [{"second", "minute", "hour", "day", "week", "month", "year"}, {"euro", "eur", "dollar", "usd"},
             {"mb", "gb", "tb"}]


def _unit(word: str) -> str:
    return word[:-1] if word.endswith("s") and word[:-1] in _UNITS else word


def _units_conflict(reply: list[str], alias: list[str]) -> bool:
    """The reply names a different unit of the same kind than the alias ("5 hours" for "5 minutes")."""
    said, wanted = {_unit(t) for t in reply}, {_unit(t) for t in alias}
    return any(wanted & family and (said & family) - wanted for family in _FAMILIES)


def _numbers(words: list[str]) -> list[str]:
    """Number words to digits ("thirty five" -> "35", "three" -> "3"); digits lose leading zeros."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _TENS:
            value = _TENS[w]
            if i + 1 < len(words) and words[i + 1] in _NUMBERS and 0 < _NUMBERS[words[i + 1]] < 10:
                value += _NUMBERS[words[i + 1]]
                i += 1
            out.append(str(value))
        elif w in _NUMBERS:
            out.append(str(_NUMBERS[w]))
        elif w.isdigit():
            out.append(str(int(w)))
        else:
            out.append(w)
        i += 1
    return out


def tokens(text: str) -> list[str]:
    """The normalised tokens of a text (see the module docstring)."""
    text = text.lower().replace("%", " percent ").replace("€", " euros ").replace("$", " dollars ")
    text = re.sub(r"(?<=\d)[,_](?=\d{3}\b)", "", text)  # 100,000 -> 100000
    # A clock time or a decimal is one token ("02:15" -> "2h15", "1.5" -> "1p5"): its parts are no
    # numbers of their own, so "15 percent" is not found in "at 02:15".
    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", lambda m: f"{int(m.group(1))}h{m.group(2)}", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "p", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return _numbers([w for w in text.split() if w not in _ARTICLES])


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def core(alias: str, question: str = "") -> list[str]:
    """The tokens of an alias that carry the answer: no connectors, units or question words."""
    asked = set(tokens(question))
    return [t for t in tokens(alias) if t not in _CONNECTORS and t not in _UNITS and t not in asked]


def token_f1(reply: str, alias: str) -> float:
    got, want = tokens(reply), tokens(alias)
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want or not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def alias_matches(reply: str, alias: str, question: str = "") -> bool:
    """Whether one alias is in the reply (containment of the alias or its core, or F1 >= threshold)."""
    want = normalise(alias)
    if not want:
        return False
    if f" {want} " in f" {normalise(reply)} ":
        return True
    key, got = core(alias, question), tokens(reply)
    if key and set(key) <= set(got) and not _units_conflict(got, tokens(alias)):
        return True
    return token_f1(reply, alias) >= F1_THRESHOLD


@dataclass(frozen=True)
class Judgement:
    match: bool
    f1: float  # best token-F1 over the aliases


def judge(reply: str, aliases: list[str], question: str = "") -> Judgement:
    """The verdict on one reply against every acceptable answer of an item."""
    aliases = [a for a in aliases if a.strip()]
    return Judgement(match=any(alias_matches(reply, a, question) for a in aliases),
                     f1=round(max((token_f1(reply, a) for a in aliases), default=0.0), 5))
