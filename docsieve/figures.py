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
(docsieve/dates.py). A figure of one text *disagrees* with the other text when the other puts a figure between
the same two words before and the same two words after, none of the figures it puts there looks like it, and its
digits are nowhere in the other text. It *agrees* when its digits are in the other text, or a figure the other
puts between the same words looks like it. (The words before alone were tried first: two cuts of one oil report,
one keeping the Brent sentence and the other the WTI sentence, "N cents to X dollars a barrel", then differed.)
Two figures look alike when they have the same digits in another order (a decimal typed right to left: "54.92" and
"92 54") or the same two leading digits (rounded, or partly in words: "29,176,352" and "29.2 million"). A figure
found elsewhere in the other text agrees: a roundup carries an item's figures among other items' in the same
frames, a table repeats its frames with other rows' figures.

The same figures tell copies apart from a template's other items the other way too (``shared``): two texts that
share a figure of five digits or more (not a date: the day's date is every item's) carry one item, whose count or
sum no other item of the frame repeats ("363,378 Yemenis' status corrected" in two cuts of the Passports release).
The story rules keep such a pair copies when the template weights would refuse it (docsieve/stories.py), unless the
figure is one that many stored texts hold as a word (a telephone number in a footer, ``COMMON_FIGURE_TEXTS``).

Measured on the hand-labeled pairs of saudinewsnet-dev (bench/labels/, docs/benchmarks.md, "Figures that
disagree"): no labeled copy (of 628) nor related pair is apart by this rule; 13 different pairs are (dividend
notices and half-year results of two companies, market closes of two sessions).
"""

from __future__ import annotations

import re

import numpy as np

# A text's figures: each its digits in order (no leading zeros, no decimal mark), and the hashes of its slots
# (the two words before it, the two after; 0 where the text starts or ends).
Figure = tuple[str, int, int]
Figures = tuple[Figure, ...]

# At least this many figures of the text with fewer disagree with the other, and at least a quarter of those
# compared (APART_SHARE): one figure updated or rounded is no other item.
APART = 3
APART_SHARE = 0.25

_NOT_DIGIT = re.compile(r"\D")
_SPACE, _ZERO, _NINE, _RA = 0x20, 0x30, 0x39, 0x631  # normalized text: ASCII digits, "ر" the decimal mark
# A slot's hash is its two tokens' hashes mixed, by side; 0 is no slot.
_BEFORE, _AFTER = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def batch_figures(codes: np.ndarray, tokens: np.ndarray, token_bounds: np.ndarray, text: str) -> list[Figures]:
    """The figures of each document of a normalized batch: ``codes`` its code points (every token closed by a
    space), ``tokens`` the tokens' hashes (docsieve/fingerprint.py), ``token_bounds`` where each document's tokens
    start (len = documents + 1), ``text`` the codes decoded. A figure is a run of tokens of digits (one "ر" allowed
    inside a token: "935ر6"), a lone "ر" between two of them joining them; its slots are the hashes of the two
    tokens before it and the two after it in its document. Only the tokens that hold digits are looked at (a
    pattern over each text took 28 µs a document, a third of fingerprinting; masks over every character, as
    much)."""
    docs = len(token_bounds) - 1
    found: list[list[Figure]] = [[] for _ in range(docs)]
    codes = codes.astype(np.uint32, copy=False)
    at = np.flatnonzero(codes - np.uint32(_ZERO) < 10)  # the digits (below "0" wraps around)
    spaces = np.flatnonzero(codes == _SPACE)
    if not len(at) or not len(spaces):
        return [() for _ in range(docs)]
    held, digits = np.unique(np.searchsorted(spaces, at), return_counts=True)  # tokens with digits, how many
    begin = np.where(held > 0, spaces[np.maximum(held - 1, 0)] + 1, 0)
    length = spaces[held] - begin
    numeric = digits == length
    # A token with one other character: a figure if it is "ر" between digits ("935ر6").
    for i in np.flatnonzero(digits == length - 1).tolist():
        a, b = int(begin[i]), int(spaces[held[i]])
        numeric[i] = text[a] != "ر" and text[b - 1] != "ر" and "ر" in text[a:b]
    figure_tokens = held[numeric]
    if not len(figure_tokens):
        return [() for _ in range(docs)]
    doc = np.searchsorted(token_bounds, figure_tokens, side="right") - 1
    # Runs: tokens side by side, or with a lone "ر" between them, in one document.
    gap = np.diff(figure_tokens)
    between = np.minimum(figure_tokens[:-1] + 1, len(spaces) - 1)
    lone_ra = (spaces[between] - spaces[between - 1] == 2) & (codes[spaces[between] - 1] == _RA)
    joined = ((gap == 1) | ((gap == 2) & lone_ra)) & (doc[1:] == doc[:-1])
    first = figure_tokens[np.concatenate(([True], ~joined))]
    last = figure_tokens[np.concatenate((~joined, [True]))]
    doc = doc[np.concatenate(([True], ~joined))]
    begins, ends = token_bounds[doc], token_bounds[doc + 1]
    tokens = tokens.astype(np.uint64)
    top = len(tokens) - 1
    before = (tokens[np.maximum(first - 2, 0)] * _BEFORE) ^ tokens[np.maximum(first - 1, 0)]
    after = (tokens[np.minimum(last + 1, top)] * _AFTER) ^ tokens[np.minimum(last + 2, top)]
    before = np.where(first - 2 >= begins, np.maximum(before, 1), 0)
    after = np.where(last + 2 < ends, np.maximum(after, 1), 0)
    char_from = np.where(first > 0, spaces[np.maximum(first - 1, 0)] + 1, 0)
    for d, a, b, slot_before, slot_after in zip(
        doc.tolist(), char_from.tolist(), spaces[last].tolist(), before.tolist(), after.tolist(), strict=True
    ):
        found[d].append((_NOT_DIGIT.sub("", text[a:b]).lstrip("0") or "0", slot_before, slot_after))
    return [tuple(f) for f in found]


# A figure this long is a count, a sum or a price of one item; shorter ones are hours, temperatures, ages and years,
# which items of one frame share. A figure ending in a year is a date ("9/10/1436", "25/7/2015"), and so is one of six
# to eight digits that starts with one ("1436/10/07", "2015-07-23").
DISTINCTIVE = 5
_YEAR = r"(?:14[0-4]\d|19\d\d|20[0-4]\d)"
_DATE = re.compile(rf"{_YEAR}$|^{_YEAR}\d{{2,4}}$")


def shared(a: Figures, b: Figures) -> set[str]:
    """The distinctive figures two texts share: five digits or more, and not a date."""
    mine = {d for d, _, _ in a if len(d) >= DISTINCTIVE and not _DATE.search(d)}
    return {d for d, _, _ in b if d in mine}


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
