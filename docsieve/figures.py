"""Figures that disagree: two texts that put different figures in the same words are different items.

Company notices, market reports and statistics releases are written on frames: "the board approved a cash
dividend ...: 1. the total distributed X riyals 2. the share's part Y riyals 3. Z% of its nominal value". Two
companies' notices of one day share most of their words, and the template counts (docsieve/templates.py) learn
such a frame only after a few items of it. What differs is the figures: each company's X, Y and Z, where a copy
keeps its source's, however it rewords the rest. So two texts that put different figures in the same words,
three or more (a figure counted once however often the text repeats it) and a quarter or more of the figures
compared, are not copies of each other: one figure corrected, or two, is the same item.

A figure is a run of digits as normalization leaves them (docsieve/normalize.py: "60,000,000" is "60 000 000",
Arabic-Indic digits are ASCII), with the Arabic press's decimal mark "ر" ("935ر6": 6.935, written in reading
order) inside it. Its slots are the two words before it and the two words after it, as a weekday's are
(docsieve/dates.py). A figure of one text *disagrees* with the other text when the other has one of its slots,
no figure the other puts in that slot looks like it, and its digits are nowhere in the other text. It *agrees*
when its digits are in the other text, or a figure of a shared slot looks like it. Two figures look alike when
they have the same digits in another order (a decimal typed right to left: "54.92" and "92 54") or the same two
leading digits (rounded, or partly in words: "29,176,352" and "29.2 million"). A figure found elsewhere in the
other text agrees: a roundup carries an item's figures among other items' in the same frames, a table repeats its
frames with other rows' figures.

Measured on the hand-labeled pairs of saudinewsnet-dev (bench/labels/, docs/benchmarks.md, "Figures that
disagree"): of 614 labeled copies none has three disagreeing figures that are a quarter of the figures compared;
36 different or related pairs do (dividend notices of two companies, gold and oil reports of two moments of a
day, the parts of SAMA's annual report, weekly charts).
"""

from __future__ import annotations

import re
import zlib

# A text's figures: each its digits in order (no leading zeros, no decimal mark), and the hashes of its slots
# (the two words before it, the two after; 0 where the text starts or ends).
Figure = tuple[str, int, int]
Figures = tuple[Figure, ...]

# At least this many figures of the text with fewer disagree with the other, and at least a quarter of those
# compared (APART_SHARE): one figure updated or rounded is no other item.
APART = 3
APART_SHARE = 0.25

# A figure: digit tokens side by side, a "ر" between digits (the decimal mark) or inside a token ("935ر6").
_FIGURE = re.compile(r"(?<!\S)[0-9]+(?:ر[0-9]+)?(?: (?:[0-9]+(?:ر[0-9]+)?|ر(?= [0-9])))*(?!\S)")
_DIGITS = re.compile(r"[0-9][0-9 ر]*")
_NOT_DIGIT = re.compile(r"\D")


def figures_of(normalized: str) -> Figures:
    """The figures of a normalized text (tokens separated by single spaces)."""
    found = []
    # A plain scan for digits first, and the figure's pattern only where it found some (its lookarounds at every
    # character took two thirds of the time). The pattern sees one character past the run, for its lookahead.
    runs = (_FIGURE.finditer(normalized, r.start(), r.end() + 1) for r in _DIGITS.finditer(normalized))
    for match in (m for run in runs for m in run):
        start, end = match.span()
        digits = _NOT_DIGIT.sub("", match.group()).lstrip("0") or "0"
        # The two words before (after) it: up to the second space back (on) from it, if there are two.
        first = normalized.rfind(" ", 0, normalized.rfind(" ", 0, start - 1)) + 1 if start else 0
        last = normalized.find(" ", normalized.find(" ", end + 1) + 1) if end < len(normalized) else -1
        before = normalized[first : start - 1] if start and " " in normalized[first : start - 1] else ""
        after = normalized[end + 1 : last if last >= 0 else len(normalized)] if end < len(normalized) else ""
        found.append((digits, _slot("<", before), _slot(">", after if " " in after else "")))
    return tuple(found)


def _slot(side: str, words: str) -> int:
    """A slot's hash (crc32: the same in every process, as the preparing process makes a batch's), 0 for none."""
    return zlib.crc32(f"{side}{words}".encode()) or 1 if words else 0


def _alike(digits: str) -> set[str]:
    """What a figure looks like: its digits in any order (zeros apart: 0.60 and 6), its two leading digits."""
    return {"".join(sorted(digits.replace("0", ""))), "^" + digits[:2]}


def compare(a: Figures, b: Figures) -> tuple[int, int]:
    """How many figures of ``a`` (different values) disagree with ``b``, and how many agree (see the module)."""
    digits_b = {"".join(sorted(d)) for d, _, _ in b}
    in_slot: dict[tuple[int, int], set[str]] = {}
    for digits, before, after in b:
        if before and after:
            in_slot.setdefault((before, after), set()).update(_alike(digits))
    # Counted by value: a figure the text repeats ("5 new cases ... the 5 cases") is one figure, however often.
    disagree: set[str] = set()
    agree: set[str] = set()
    for digits, before, after in a:
        shared = in_slot.get((before, after))
        if "".join(sorted(digits)) in digits_b or (shared is not None and _alike(digits) & shared):
            agree.add(digits)
        elif shared is not None:
            disagree.add(digits)
    return len(disagree - agree), len(agree)


def apart(a: Figures, b: Figures) -> bool:
    """Whether two texts put different figures in the same words: different items of one frame. The figures of the
    text with fewer are weighed (an item inside a longer text: the longer one's other figures are other items');
    with as many, both ways."""
    if min(len(a), len(b)) < APART:
        return False
    ways = [(a, b)] if len(a) < len(b) else [(b, a)] if len(b) < len(a) else [(a, b), (b, a)]
    for one, other in ways:
        disagree, agree = compare(one, other)
        if disagree < APART or disagree < APART_SHARE * (disagree + agree):
            return False
    return True
