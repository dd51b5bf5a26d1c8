"""Normalization for fingerprints (never for the stored text).

Rules: Unicode NFKC and casefolding; Arabic diacritics (harakat, superscript alef) and tatweel removed;
alef forms (أ إ آ ٱ) to ا, ى to ي, ة to ه, and the Persian, Urdu and Kurdish keyboards' forms of Arabic
letters (ی ک ہ ۂ ۀ ھ ە ۃ) to the Arabic ones; Arabic-Indic and Persian digits to ASCII; punctuation
(Arabic ، ؛ ؟ included), symbols, controls and separators become word breaks; format characters
(ZWNJ, RLM, BOM), invisible fillers (Hangul fillers, the braille blank) and other non-spacing marks
vanish. In a word with Latin letters, the Cyrillic and Greek look-alikes of Latin letters become those
letters ("Рresident" with a Cyrillic Р is "president"); a Cyrillic or Greek word keeps its letters.
The result is the words separated by single spaces.

Why not ``str.translate``: with a dict table it costs more for a typical Arabic article than the whole
fingerprint budget (docs/benchmarks.md). Instead every BMP code point is folded once, at first use, into a
lookup table that numpy applies to a whole batch of UTF-32 code points at once. The few texts whose
characters need NFKC composition or multi-character casefolding (presentation forms, ß, combining
accents, astral characters) go through ``unicodedata`` first, then through the same table, so both
paths give the same answer. The same lookup that finds those texts finds the few with both Latin
letters and Cyrillic or Greek look-alikes; only their words are checked for mixed scripts.
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
# Bits of _Tables.flags: the character needs the unicodedata prepass; its NFKC casefold holds a Cyrillic
# or Greek look-alike of a Latin letter, a Latin letter. A word with both bits mixes scripts.
SPECIAL, LOOKALIKE, LATIN = 1, 2, 4
MIXED = LOOKALIKE | LATIN

ARABIC_FOLDS = {
    "أ": "ا",
    "إ": "ا",
    "آ": "ا",
    "ٱ": "ا",
    "ى": "ي",
    "ة": "ه",
    # What Persian, Urdu and Kurdish keyboards type for these Arabic letters, so what an Arabic text
    # typed or converted there holds; each looks like the Arabic letter (UTS #39 confusables.txt maps
    # them to it). Fingerprints then no longer tell Urdu ہ from ھ or Kurdish ە from ھ, which only
    # matters for two texts that differ in nothing else. Letters with no Arabic counterpart (پ چ ژ گ),
    # Urdu ے and Sindhi ڪ (another language's own letter, never typed for ي or ك) stay.
    "\u06cc": "ي",  # ی FARSI YEH
    "\u06a9": "ك",  # ک KEHEH
    "\u06c1": "ه",  # ہ HEH GOAL
    "\u06c2": "ه",  # ۂ HEH GOAL WITH HAMZA ABOVE (the hamza marks the ezafe; hamza marks are dropped)
    "\u06c0": "ه",  # ۀ HEH WITH YEH ABOVE (likewise)
    "\u06be": "ه",  # ھ HEH DOACHASHMEE: the Urdu and Kurdish heh in its joined forms
    "\u06d5": "ه",  # ە AE: the Kurdish final heh
    "\u06c3": "ه",  # ۃ TEH MARBUTA GOAL, like ة
}
ARABIC_DROPPED = {"\u0640"} | {chr(c) for c in range(0x064B, 0x0660)} | {"\u0670"}
# Hamza and maddah marks compose with a preceding letter under NFKC (و + ٔ -> ؤ): such texts must
# be composed before the marks are dropped, or the two spellings would differ.
COMPOSING_MARKS = {"\u0653", "\u0654", "\u0655"}
DIGITS = {chr(0x0660 + i): str(i) for i in range(10)} | {chr(0x06F0 + i): str(i) for i in range(10)}
# Letters and symbols that draw nothing or a blank: the Hangul fillers (default-ignorable in Unicode),
# the braille blank and the null notehead, and the default-ignorable code points Unicode keeps
# unassigned. Put between letters they hide a copy, so they vanish like ZWNJ rather than break the word
# (a text that puts them instead of spaces runs its words together: a filler between two words cannot
# be told from one inside a word).
INVISIBLE = (
    {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\U0001d159", "\u2065"}
    | {chr(c) for c in range(0xFFF0, 0xFFF9)}
    | {chr(c) for c in range(0xE0000, 0xE1000)}
)
# Cyrillic and Greek letters that look like a Latin letter (the single-letter prototypes of UTS #39
# confusables.txt), as they are after casefolding: where only the capital looks like one (Н, Η for H),
# its small letter stands for it. An explicit table rather than a confusables library: the fold must
# be a fixed table for the vectorized lookup, its entries must not move with a library release (stored
# fingerprints would), and these letters are what makes a Latin word look unchanged. µ (the micro sign,
# Greek mu after NFKC) is left out: units mix it with Latin letters (µg, µm).
LOOKALIKES = {
    **dict(zip("авгекмнорстухьѕіјѡѵүһҽӏԁԍԛԝꙇ", "abrekmhopctyxbsijwvyheidgqwi", strict=True)),
    **dict(zip("αβγεζηικνορστυχϝϳϻᴦ", "abyezhikvopotuxfjmr", strict=True)),
}


def fold_char(ch: str) -> str:
    """The fold of one already NFKC-normalized, casefolded character: itself, another, "" or " "."""
    if ch in ARABIC_FOLDS:
        return ARABIC_FOLDS[ch]
    if ch in DIGITS:
        return DIGITS[ch]
    if ch in ARABIC_DROPPED or ch in INVISIBLE:
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
    flags: np.ndarray  # uint8[65536]: SPECIAL (needs_unicodedata or expandable), LOOKALIKE, LATIN
    latin: np.ndarray  # uint32[65536]: the Latin letter a folded look-alike stands for, else 0
    # Characters whose NFKC casefold is several plain characters (ﻻ -> لا, ß -> ss) need no
    # composition: a regex substitution expands them before the table applies.
    expansions: dict[str, str]
    expandable: re.Pattern[str]
    # The BMP characters the fold deletes, and those with the LOOKALIKE and LATIN flags.
    vanishing: re.Pattern[str]
    lookalike: re.Pattern[str]
    latin_letter: re.Pattern[str]


ARRAYS = ("fold", "needs_unicodedata", "flags", "latin")


@cache
def _tables() -> _Tables:
    """The tables, from the on-disk cache when this code and Unicode version built them before: building
    them is a large part of a short run's start-up (docs/benchmarks.md)."""
    key = hashlib.sha256(Path(__file__).read_bytes() + unicodedata.unidata_version.encode()).hexdigest()[:16]
    cached = _cache_dir() / f"normalize-{key}.npz"
    try:
        with np.load(cached) as data:
            fold, needs, flags, latin = (data[name] for name in ARRAYS)
        expansions = json.loads(cached.with_suffix(".json").read_text(encoding="utf-8"))
    except Exception:  # missing, truncated or from another numpy: build it again
        tables = _build_tables()
        _save(cached, tables)
        return tables
    return _with_patterns(fold, needs, flags, latin, expansions)


def _cache_dir() -> Path:
    """The user's cache folder for docsieve where the platform keeps such folders (``$XDG_CACHE_HOME/docsieve``
    when that is set, else ``~/.cache/docsieve`` on Linux; ``~/Library/Caches`` on macOS, the local app data
    on Windows)."""
    import platformdirs  # imported here: only a run that builds or loads the tables needs it

    return Path(platformdirs.user_cache_dir("docsieve", appauthor=False))


def _save(path: Path, tables: _Tables) -> None:
    """Write the cache atomically; a cache that cannot be written only costs the next start-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, **{name: getattr(tables, name) for name in ARRAYS})
        json_path = path.with_suffix(".json")
        json_path.with_name(f"{json_path.name}.{os.getpid()}").write_text(json.dumps(tables.expansions), "utf-8")
        os.replace(json_path.with_name(f"{json_path.name}.{os.getpid()}"), json_path)
        os.replace(temporary, path)
    except OSError:
        pass


def _with_patterns(
    fold: np.ndarray, needs: np.ndarray, flags: np.ndarray, latin: np.ndarray, expansions: dict[str, str]
) -> _Tables:
    expandable = re.compile("[" + "".join(map(re.escape, expansions)) + "]")
    return _Tables(
        fold,
        needs,
        flags,
        latin,
        expansions,
        expandable,
        _character_class(np.flatnonzero(fold == DELETE)),
        _character_class(np.flatnonzero(flags & LOOKALIKE)),
        _character_class(np.flatnonzero(flags & LATIN)),
    )


def _character_class(cps: np.ndarray) -> re.Pattern[str]:
    """A pattern for any of these code points (sorted, at least one), as ranges: a short character class."""
    cuts = np.flatnonzero(np.diff(cps) != 1)
    firsts, lasts = cps[np.r_[0, cuts + 1]].tolist(), cps[np.r_[cuts, len(cps) - 1]].tolist()
    ranges = (f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in zip(firsts, lasts, strict=True))
    return re.compile("[" + "".join(ranges) + "]")


def _build_tables() -> _Tables:
    # Python lists while filling: a numpy item assignment per code point would cost most of the build.
    fold = [SPACE] * 0x10000  # lone surrogates (from surrogateescape) are no text
    needs = np.zeros(0x10000, dtype=bool)
    flags = [0] * 0x10000
    composes_as = list(range(0x10000))  # the one BMP character a character's NFKC form is
    expansions: dict[str, str] = {}
    code_points = (*range(0xD800), *range(0xE000, 0x10000))
    latin_letters = {
        ch for ch in map(chr, code_points) if ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN ")
    }
    for cp in code_points:
        ch = chr(cp)
        composed = unicodedata.normalize("NFKC", ch).casefold()
        flags[cp] = (0 if LOOKALIKES.keys().isdisjoint(composed) else LOOKALIKE) | (
            0 if latin_letters.isdisjoint(composed) else LATIN
        )
        if len(composed) > 1 and not "".join(map(fold_char, composed)).strip():
            composed = " "  # an expansion into punctuation only (… -> ...) is just a word break
        if (unicodedata.combining(ch) and ch not in ARABIC_DROPPED) or ch in COMPOSING_MARKS:
            needs[cp] = True
        elif len(composed) != 1:
            if any(unicodedata.combining(c) or ord(c) > 0xFFFF for c in composed):
                needs[cp] = True
            else:
                expansions[ch] = composed
        elif ord(composed) <= 0xFFFF:
            composes_as[cp] = ord(composed)
        decomposition = unicodedata.decomposition(ch).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<"):
            # The second part of a canonical pair composes with what precedes it (even at ccc 0).
            needs[int(decomposition[1], 16)] = True
        folded = fold_char(composed) if len(composed) == 1 else fold_char(ch)
        fold[cp] = DELETE if folded == "" else ord(folded) if len(folded) == 1 else SPACE
    needs[0x1100:0x1200] = True  # conjoining Hangul jamo compose under NFKC
    needs |= needs[composes_as]  # and so do the compatibility jamo that NFKC makes them (ㄱ -> ᄀ)
    folds = np.array(fold, dtype=np.uint32)
    # A character that folds to another must land on a fixed point, so normalizing twice changes nothing.
    moved = (folds != DELETE) & (folds <= 0xFFFF)
    folds[moved] = folds[folds[moved]]
    flag_array = np.array(flags, dtype=np.uint8) | needs
    flag_array[[ord(ch) for ch in expansions]] |= SPECIAL
    latin = np.zeros(0x10000, dtype=np.uint32)
    latin[[ord(ch) for ch in LOOKALIKES]] = [ord(ch) for ch in LOOKALIKES.values()]
    return _with_patterns(folds, needs, flag_array, latin, expansions)


def _prepass(text: str, tables: _Tables) -> str:
    """For the few texts with characters the table cannot fold one to one: expand what only expands;
    where composition matters, NFKC + casefold through unicodedata and fold astral characters."""
    if not any(ord(ch) > 0xFFFF or tables.needs_unicodedata[ord(ch)] for ch in set(text)):
        return tables.expandable.sub(lambda m: tables.expansions[m.group()], text)
    text = unicodedata.normalize("NFKC", text).casefold()
    if any(ord(ch) > 0xFFFF for ch in text):
        text = "".join(fold_char(ch) if ord(ch) > 0xFFFF else ch for ch in text)
    # What vanishes may stand between two characters that compose (ᄀ, a filler or a mark, then ᅡ):
    # without it they compose, as they would when the result is normalized again.
    while True:
        text, vanished = tables.vanishing.subn("", text)
        if not vanished:
            return text
        text = unicodedata.normalize("NFKC", text).casefold()


def _unspoof(codes: np.ndarray, bounds: np.ndarray, docs: list[int], tables: _Tables) -> None:
    """In place: in the words of these documents that hold Latin letters, each Cyrillic or Greek
    look-alike becomes the Latin letter it looks like. Consecutive documents are one slice, so a batch
    of such documents is one pass and a few among many cost only their own length."""
    for run in np.split(np.asarray(docs), np.flatnonzero(np.diff(docs) != 1) + 1):
        part = codes[bounds[run[0]] : bounds[run[-1] + 1]]  # a view; every word ends with a space
        low = _low(part)
        kinds = np.take(tables.flags, low) & MIXED
        kinds[part > 0xFFFF] = 0  # an astral letter is neither (its low bits are another character's)
        ends = np.flatnonzero(part == SPACE)
        starts = np.empty_like(ends)
        starts[0], starts[1:] = 0, ends[:-1] + 1
        mixed = np.bitwise_or.reduceat(kinds, starts) == MIXED
        spoofed = np.flatnonzero(np.repeat(mixed, ends - starts + 1) & (kinds == LOOKALIKE))
        latin = np.take(tables.latin, low[spoofed])
        part[spoofed] = np.where(latin != 0, latin, part[spoofed])


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
    flags = np.take(tables.flags, low)
    flags |= astral  # the table does not reach astral characters: special
    spoofable: list[int] = []
    if flags.any():
        of_doc = np.bitwise_or.reduceat(flags, np.r_[0, ends[:-1] + 1])
        special = np.flatnonzero(of_doc & SPECIAL).tolist()
        spoofable = np.flatnonzero((of_doc & (MIXED | SPECIAL)) == MIXED).tolist()
        if special:
            texts = list(texts)
            for i in special:
                texts[i] = _prepass(texts[i], tables)
            # Seen again once NFKC has made astral letters BMP ones (mathematical 𝛒 is ρ).
            again = [i for i in special if tables.lookalike.search(texts[i]) and tables.latin_letter.search(texts[i])]
            spoofable = sorted(spoofable + again)
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
    if spoofable:
        _unspoof(codes, bounds, spoofable, tables)
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
