"""Normalization for fingerprints (never for the stored text).

Rules: Unicode NFKC and casefolding; Arabic diacritics (harakat, superscript alef) and tatweel removed;
alef forms (أ إ آ ٱ) to ا, ى to ي, ة to ه; Arabic-Indic and Persian digits to ASCII; punctuation
(Arabic ، ؛ ؟ included), symbols, controls and separators become word breaks; format characters
(ZWNJ, RLM, BOM) and other non-spacing marks vanish. The result is the words separated by single
spaces.

Why not ``str.translate``: with a dict table it costs about 180 µs for a typical Arabic article, more
than the whole fingerprint budget. Instead every BMP code point is folded once, at first use, into a
lookup table that numpy applies to a whole batch of UTF-32 code points at once. The few texts whose
characters need NFKC composition or multi-character casefolding (presentation forms, ß, combining
accents, astral characters) go through ``unicodedata`` first, then through the same table, so both
paths give the same answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

SPACE = 32
DELETE = 0  # NUL in the input becomes a space (it is a control), so 0 is free to mean "drop"

ARABIC_FOLDS = {"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"}
ARABIC_DROPPED = {"\u0640"} | {chr(c) for c in range(0x064B, 0x0660)} | {"\u0670"}
# Hamza and maddah marks compose with a preceding letter under NFKC (و + ٔ -> ؤ): such texts must
# be composed before the marks are dropped, or the two spellings would differ.
COMPOSING_MARKS = {"\u0653", "\u0654", "\u0655"}
DIGITS = {chr(0x0660 + i): str(i) for i in range(10)} | {chr(0x06F0 + i): str(i) for i in range(10)}


def fold_char(ch: str) -> str:
    """The fold of one already NFKC-normalized, casefolded character: itself, another, "" or " "."""
    if ch in ARABIC_FOLDS:
        return ARABIC_FOLDS[ch]
    if ch in DIGITS:
        return DIGITS[ch]
    if ch in ARABIC_DROPPED:
        return ""
    category = unicodedata.category(ch)
    if category in ("Mn", "Me", "Cf"):
        return ""
    if category[0] in "PSZC":
        return " "
    return ch


@dataclass(frozen=True, slots=True)
class _Tables:
    fold: np.ndarray  # uint32[65536]: folded code point, SPACE, or DELETE
    needs_unicodedata: np.ndarray  # bool[65536]: NFKC must see this character in context
    special: np.ndarray  # bool[65536]: needs_unicodedata or expandable
    # Characters whose NFKC casefold is several plain characters (ﻻ -> لا, ß -> ss) need no
    # composition: a regex substitution expands them before the table applies.
    expansions: dict[str, str]
    expandable: re.Pattern[str]


@cache
def _tables() -> _Tables:
    """The tables, from the on-disk cache when this code and Unicode version built them before: building
    takes a tenth of a second, a large part of a short run's start-up."""
    key = hashlib.sha256(Path(__file__).read_bytes() + unicodedata.unidata_version.encode()).hexdigest()[:16]
    cached = _cache_dir() / f"normalize-{key}.npz"
    try:
        with np.load(cached) as data:
            fold, needs, special = data["fold"], data["needs"], data["special"]
        expansions = json.loads(cached.with_suffix(".json").read_text(encoding="utf-8"))
    except Exception:  # missing, truncated or from another numpy: build it again
        tables = _build_tables()
        _save(cached, tables)
        return tables
    return _Tables(fold, needs, special, expansions, _expandable(expansions))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "docsieve"


def _save(path: Path, tables: _Tables) -> None:
    """Write the cache atomically; a cache that cannot be written only costs the next start-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, fold=tables.fold, needs=tables.needs_unicodedata, special=tables.special)
        json_path = path.with_suffix(".json")
        json_path.with_name(f"{json_path.name}.{os.getpid()}").write_text(json.dumps(tables.expansions), "utf-8")
        os.replace(json_path.with_name(f"{json_path.name}.{os.getpid()}"), json_path)
        os.replace(temporary, path)
    except OSError:
        pass


def _expandable(expansions: dict[str, str]) -> re.Pattern[str]:
    return re.compile("[" + "".join(map(re.escape, expansions)) + "]")


def _build_tables() -> _Tables:
    fold = np.empty(0x10000, dtype=np.uint32)
    needs = np.zeros(0x10000, dtype=bool)
    expansions: dict[str, str] = {}
    for cp in range(0x10000):
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:  # lone surrogates (from surrogateescape) are no text
            fold[cp] = SPACE
            continue
        composed = unicodedata.normalize("NFKC", ch).casefold()
        if len(composed) > 1 and not "".join(map(fold_char, composed)).strip():
            composed = " "  # an expansion into punctuation only (… -> ...) is just a word break
        if (unicodedata.combining(ch) and ch not in ARABIC_DROPPED) or ch in COMPOSING_MARKS:
            needs[cp] = True
        elif len(composed) != 1:
            if any(unicodedata.combining(c) or ord(c) > 0xFFFF for c in composed):
                needs[cp] = True
            else:
                expansions[ch] = composed
        decomposition = unicodedata.decomposition(ch).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<"):
            # The second part of a canonical pair composes with what precedes it (even at ccc 0).
            needs[int(decomposition[1], 16)] = True
        folded = fold_char(composed) if len(composed) == 1 else fold_char(ch)
        fold[cp] = DELETE if folded == "" else ord(folded) if len(folded) == 1 else SPACE
    needs[0x1100:0x1200] = True  # conjoining Hangul jamo compose under NFKC
    # A character that folds to another must land on a fixed point, so normalizing twice changes nothing.
    moved = (fold != DELETE) & (fold <= 0xFFFF)
    fold[moved] = fold[fold[moved]]
    special = needs.copy()
    special[[ord(ch) for ch in expansions]] = True
    return _Tables(fold, needs, special, expansions, _expandable(expansions))


def _prepass(text: str, tables: _Tables) -> str:
    """For the few texts with characters the table cannot fold one to one: expand what only expands;
    where composition matters, NFKC + casefold through unicodedata and fold astral characters."""
    if not any(ord(ch) > 0xFFFF or tables.needs_unicodedata[ord(ch)] for ch in set(text)):
        return tables.expandable.sub(lambda m: tables.expansions[m.group()], text)
    text = unicodedata.normalize("NFKC", text).casefold()
    if any(ord(ch) > 0xFFFF for ch in text):
        text = "".join(fold_char(ch) if ord(ch) > 0xFFFF else ch for ch in text)
    return text


@dataclass(frozen=True, slots=True)
class NormalizedBatch:
    """The normalized code points of a batch: each document's words separated by single spaces, every
    document followed by one space. ``bounds[i]:bounds[i+1]`` is document i including its closing space
    (empty when the document has no words)."""

    codes: np.ndarray  # uint32
    bounds: np.ndarray  # int64, len = documents + 1

    def text(self, i: int) -> str:
        start, end = int(self.bounds[i]), int(self.bounds[i + 1])
        return self.codes[start : max(start, end - 1)].tobytes().decode("utf-32-le")


def normalize_batch(texts: Sequence[str]) -> NormalizedBatch:
    tables = _tables()
    cps, ends = _code_points(texts)
    low, astral = _low(cps), cps > 0xFFFF
    special = np.take(tables.special, low) | astral
    if special.any():
        texts = list(texts)
        for i in set(np.searchsorted(ends, np.flatnonzero(special)).tolist()):
            texts[i] = _prepass(texts[i], tables)
        cps, ends = _code_points(texts)
        low, astral = _low(cps), cps > 0xFFFF

    folded = np.take(tables.fold, low)
    if astral.any():  # the prepass left only the astral characters that are word characters
        folded[astral] = cps[astral]
    # Drop deleted characters, then runs of spaces and a space that opens a document (the previous one
    # closed it). Each time only the positions of the closing spaces are followed, through the
    # dropped positions before them: far fewer than the characters, so no cumulative sum over them.
    folded, ends = _drop(folded, ends, folded == DELETE)
    space = folded == SPACE
    previous_space = np.empty_like(space)
    if len(space):
        previous_space[0] = True
        previous_space[1:] = space[:-1]
    codes, ends = _drop(folded, ends, space & previous_space)
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    bounds[1:] = ends + 1  # a dropped closing space falls back on the kept space before it
    return NormalizedBatch(np.ascontiguousarray(codes), bounds)


def _low(cps: np.ndarray) -> np.ndarray:
    """The low 16 bits of each code point as table positions: numpy converts uint32 positions on every
    lookup, which costs twice the lookup itself."""
    return np.bitwise_and(cps, 0xFFFF, dtype=np.intp)


def _drop(codes: np.ndarray, ends: np.ndarray, dropped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """codes without the dropped positions, and where each position of ``ends`` (or the last kept
    position before it) lands."""
    gone = np.flatnonzero(dropped)
    if not len(gone):
        return codes, ends
    return codes[~dropped], ends - np.searchsorted(gone, ends, "right")  # (np.delete would rebuild the mask)


def _code_points(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The batch's code points, every text followed by a space, and the index of each such space."""
    joined = " ".join(texts) + " "
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))) - 1
    return cps, ends


def normalize(text: str) -> str:
    """The normalized form of one text: words separated by single spaces."""
    return normalize_batch([text]).text(0)
