"""Stories: which story a document joins, which record is a story's canonical, and what a roundup holds.

A story is one canonical record and its copies. The rules, applied to each document in arrival order
under the store's write lock (so concurrent workers see one history):

- **Verified against the canonical.** A document joins a story only if it is a copy of the story's
  canonical record (Jaccard or containment at the thresholds), or a copy of one of its members *and*
  still close to the canonical (``jaccard_floor`` / ``containment_floor``): a chain of copy-edits holds
  while every link stays near the original, and a story never drifts along copies of copies. The
  overlap every member keeps is the one with the canonical, re-measured when the canonical changes.
- **Near copies first**: a document that is a near copy (Jaccard) of some story's canonical joins it.
- **Roundups.** A document that contains the canonicals of two or more stories is a roundup: its own
  story, with ``contains`` links to those it holds, unless it is a copy of a roundup that holds every story it
  holds (the same roundup published again, cut or wrapped): it then joins that roundup's story, and holds the
  items as a roundup too, as does a near copy of a roundup. A document found only inside a roundup joins none of
  the roundup's stories through it: it is a story of its own, and the roundup gains a link to it. When
  a story's canonical turns out to hold two excerpts that share next to nothing (``DISJOINT``: the roundup
  came first), the canonical becomes a roundup and the excerpts leave for stories of their own.
- **Holds.** A record holds every other story whose canonical (or a member of which) it contains, and a
  record of one story that contains an item of another holds that item's story: a long text that joined
  one story as a copy and carries other items says so, without being a copy of them.
- **Templates.** Every comparison that places a document is also made with template boilerplate weighed
  (docsieve/templates.py): items on one template about different subjects stay apart; two copies by their shingles
  that share a distinctive figure (a count, a sum), or whose words (by rarity) the other holds nearly all of, stay
  copies whatever the weights say.
- **Days** (``Settings.weekday_check``, docsieve/dates.py): two texts that name different weekdays in the same
  words ("the ministry recorded today, Saturday" against "today, Friday") are items of one template on
  different days: no comparison that places a document calls them copies, and a new canonical keeps no
  member whose day is not its own.
- **Figures** (``Settings.figure_check``, docsieve/figures.py): so are two texts that put different figures in
  the same words, three or more ("the total distributed 60,000,000 riyals" against "108,000,000"): two companies'
  notices, a market's closes of two sessions.
- **Excerpts.** A short item inside a longer canonical (and a longer text that holds a story's
  canonical) joins that story by containment.
- **Rewrites** (``Settings.rewrites``, docsieve/rewrites.py): a document the shingles place in no story
  joins the story of a candidate whose canonical holds most of its words (the rewrite score, verified
  against the canonical like every other membership, a copy of a story's rewrite too: a strong copy of a member the
  stage placed at its chain floor, ``rewrite_chain_floor``). Published first,
  it takes the story over only if every member would stay. A member that a new canonical's shingles no
  longer reach stays while its rewrite score with it holds; when a canonical splits as a roundup, its
  rewrites go with the item they rewrite, and one that is a strong copy of a rewrite that went follows it at the
  chain floor (as it would join then).
- **Splits** (``Settings.merge_split_stories``): two stories a later copy is a copy of both, whose canonicals are
  copies of each other at the chain floor with template boilerplate weighed, of about one length and neither a
  roundup, are one story split by the order its copies came in: the one whose canonical ranks first takes the other's
  records, if every one of them stays close to its canonical.
- **The canonical** is chosen by ``Settings.canonical``: ``earliest-published`` (publication time, else
  arrival time) or ``first-seen``. A copy that ranks before the canonical takes its place; a member no
  longer close to it (the floor above) leaves for a story of its own, so what is said of each member
  stays verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol, TypeVar

import numpy as np

from docsieve.dates import Slots, disagree
from docsieve.figures import APART as FIGURES_APART
from docsieve.figures import Figures, apart, shared
from docsieve.fingerprint import jaccard_and_containment, stored_word_sets
from docsieve.models import Method, Status
from docsieve.rewrites import RewriteScores
from docsieve.settings import Settings
from docsieve.templates import NEAR_IDENTICAL, ShingleCounts, weighted_overlap

# A figure more different stored texts hold than this is boilerplate (``Book._figures_agree``): a release's count is in
# a few outlets' rewrites of it, a footer's number in every item of a column (36 and 127 texts of saudinewsnet-dev,
# whose most repeated count is in 10).
COMMON_FIGURE_TEXTS = 20
# Two excerpts of a canonical whose containment in each other is below this hold different stories.
DISJOINT = 0.15
# A text this much inside another is a reprint of it, whatever day its "for this day" names by its publication
# (docsieve/dates.py): alriyadh's print reprints of alweeam's forecasts a day late are 0.96-0.97 inside them,
# forecasts of consecutive days 0.52-0.82 (bench/labels/this-day.tsv; the cut was chosen after reading them).
REPRINT = 0.9


@dataclass(frozen=True, slots=True)
class Overlap:
    jaccard: float
    containment: float  # shared shingles over the smaller set
    smaller: int  # shingles of the smaller set
    first_smaller: bool  # the first of the two sets is the smaller (or they are equal)


@dataclass(slots=True)
class Placement:
    """Where a record stands: its story, and its overlap with the story's canonical."""

    id: str
    story_id: str
    status: Status
    content_hash: str
    rank: tuple  # sorts the records of a story by the canonical policy
    method: Method | None = None
    jaccard: float | None = None
    containment: float | None = None
    similarity: float | None = None  # one figure: the Jaccard of a near copy, else the containment


@dataclass(slots=True)
class Link:
    """A record holds a story: as a roundup (it is not a copy of what it holds), or as a copy of one story
    that also carries another's item."""

    record_id: str
    story_id: str
    containment: float
    roundup: bool = False

    def __post_init__(self) -> None:
        self.containment = round(self.containment, 4)


class StoredStories(Protocol):
    """What the rules read of the store (``docsieve.store.Transaction`` provides it)."""

    def stories_of(self, ids: Iterable[str], policy: str) -> tuple[dict[str, str], dict[str, list[Placement]]]: ...
    def members(self, story_ids: Iterable[str], policy: str) -> dict[str, list[Placement]]: ...
    def roundups(self, ids: Iterable[str]) -> set[str]: ...
    def held_stories(self, ids: Iterable[str]) -> dict[str, set[str]]: ...
    def taken_story_ids(self, ids: Iterable[str]) -> set[str]: ...


V = TypeVar("V")


def _read_into(
    known: dict[str, V], read: Callable[[list[str]], dict[str, V]] | None, ids: Iterable[str], none: V
) -> dict[str, V]:
    """``known`` with the records of ``ids`` it lacks read at once (``none`` for a record ``read`` has nothing of);
    as it is where there is no ``read``."""
    if read is not None and (wanted := [i for i in dict.fromkeys(ids) if i not in known]):
        found = read(wanted)
        known.update((i, found.get(i, none)) for i in wanted)
    return known


def rank_key(policy: str, when: datetime | None, arrived: datetime, seq: int) -> tuple:
    """The canonical policy as a sort key: the smallest ranks first. Undated documents rank by arrival."""
    if policy == "first-seen":
        return (seq,)
    return ((when or arrived).timestamp(), seq)


@dataclass
class Book:
    """The stories of one batch's decisions: what was read of the store, and what changed."""

    store: StoredStories
    settings: Settings
    shingles_of: Callable[[Iterable[str]], dict[str, np.ndarray]]  # stored records' shingle sets
    templates: ShingleCounts | None = None  # template boilerplate counts; None: every shingle counts 1
    rewrites: RewriteScores | None = None  # the rewrite stage; None: shingles alone
    days_of: Callable[[Iterable[str]], dict[str, Slots]] | None = None  # records' weekday slots; None: no check
    figures_of: Callable[[Iterable[str]], dict[str, Figures]] | None = None  # records' figures; None: no check
    placements: dict[str, Placement] = field(default_factory=dict)
    canonical_of: dict[str, str] = field(default_factory=dict)
    shingles: dict[str, np.ndarray] = field(default_factory=dict)
    roundup: set[str] = field(default_factory=set)
    overlaps: dict[tuple[str, str], Overlap] = field(default_factory=dict)
    new_records: set[str] = field(default_factory=set)  # this batch's records
    changed_records: set[str] = field(default_factory=set)  # stored records whose placement changed
    new_stories: set[str] = field(default_factory=set)
    changed_stories: set[str] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)
    touched_stories: set[str] = field(default_factory=set)  # whose members or links changed
    merged_into: dict[str, str] = field(default_factory=dict)  # stories merged into another, in order (``_merge``)
    stored_merged: set[str] = field(default_factory=set)  # of those, the ones stored before this batch
    different: set[str] = field(default_factory=set)  # new records that are new text for the template counts
    emptied: bool = False  # remove() took a story's last record
    heir: str | None = None  # remove() gave a canonical's place to this member
    _members: dict[str, list[str]] = field(default_factory=dict)  # stories whose members are loaded
    _taken: set[str] = field(default_factory=set)
    _weights: dict[str, np.ndarray] = field(default_factory=dict)
    _days: dict[str, Slots] = field(default_factory=dict)
    _figures: dict[str, Figures] = field(default_factory=dict)
    _free: set[str] = field(default_factory=set)  # record ids known to name no stored story
    _held: dict[str, set[str]] = field(default_factory=dict)  # stored records' held stories, as read
    _roundup_copies: set[str] = field(default_factory=set)  # this batch's records placed as copies of a roundup
    # What each decision started from, for ``depending_on``: a batch record -> the records it was placed among;
    # a stored record -> its story as read.
    _relied: dict[str, list[str]] = field(default_factory=dict)
    _stored_story: dict[str, str] = field(default_factory=dict)
    _parts: _Parts | None = None

    def reserve(self, record_ids: Iterable[str], earlier: Book | None = None) -> None:
        """Check at once which of a batch's record ids name no stored story yet (one query a batch); or take what
        an ``earlier`` decision of the same batch found, when nothing was taken down since: a story is named after
        a record only when that record is stored, and a batch's records are not."""
        ids = set(record_ids)
        if earlier is not None:
            self._free |= ids & earlier._free
            return
        self._free |= ids - self.store.taken_story_ids(ids)

    # What is known of stored records ------------------------------------------------------------

    def load(self, ids: Iterable[str]) -> None:
        """Placements of stored records and of every record of their stories (the rules read members for
        excerpts and take-overs), their stories' canonicals, and which of those are roundups."""
        wanted = [i for i in ids if i not in self.placements]
        if not wanted:
            return
        canonicals, members = self.store.stories_of(wanted, self.settings.canonical)
        canonicals = {s: c for s, c in canonicals.items() if s not in self.canonical_of}  # not known yet
        self.canonical_of.update(canonicals)
        self._add_members(members, canonicals)
        self.roundup |= self.store.roundups(set(canonicals.values()) | set(wanted))

    def _add_members(self, members: dict[str, list[Placement]], stories: Iterable[str]) -> None:
        """Placements as stored, for records this batch has not placed; the member lists of ``stories``."""
        for stored in members.values():
            for p in stored:
                if p.id not in self.placements:
                    self.placements[p.id] = p
                    self._stored_story[p.id] = p.story_id
        for story in stories:
            self._members[story] = [p.id for p in members.get(story, [])]

    def shingles_for(self, ids: Iterable[str]) -> None:
        wanted = [i for i in ids if i not in self.shingles]
        if wanted:
            self.shingles.update(self.shingles_of(wanted))

    def members(self, story_id: str) -> list[str]:
        """Every record of a story (stored and of this batch), canonical included."""
        if story_id not in self._members:
            stored = {} if story_id in self.new_stories else self.store.members([story_id], self.settings.canonical)
            self._add_members(stored, [story_id])
        known = set(self._members[story_id])
        placed_now = self.new_records | self.changed_records  # the only records whose story can be new
        extra = [i for i in placed_now if self.placements[i].story_id == story_id and i not in known]
        return [i for i in self._members[story_id] if self.placements[i].story_id == story_id] + extra

    # Overlaps -----------------------------------------------------------------------------------

    def overlap(self, a: str, b: str) -> Overlap:
        if (a, b) in self.overlaps:
            return self.overlaps[(a, b)]
        if (b, a) in self.overlaps:
            o = self.overlaps[(b, a)]
            return replace(o, first_smaller=not o.first_smaller or len(self.shingles[a]) == len(self.shingles[b]))
        self.shingles_for((a, b))
        sa, sb = self.shingles.get(a), self.shingles.get(b)
        if sa is None or sb is None:  # a record without shingles (stored before they were kept): unknown
            o = Overlap(0.0, 0.0, 0, True)
        else:
            j, c = jaccard_and_containment(sa, sb)
            o = Overlap(j, c, min(len(sa), len(sb)), len(sa) <= len(sb))
        self.overlaps[(a, b)] = o
        return o

    def strong(self, o: Overlap) -> bool:
        return o.jaccard >= self.settings.jaccard_threshold or self._strong_by_containment(o)

    def _strong_by_containment(self, o: Overlap) -> bool:
        s = self.settings
        return o.containment >= s.containment_threshold and o.smaller >= s.min_containment_shingles

    def beyond_template(self, a: str, b: str, strong: bool, light: bool = True) -> bool:
        """Whether two texts are still copies (``strong``: at the thresholds, else at the floor) with
        template boilerplate counting little (docsieve/templates.py), and naming the same days."""
        if self.items_apart(a, b):
            return False  # one template on different days or with other figures, however much of it they share
        if self.templates is None or self.overlap(a, b).jaccard >= NEAR_IDENTICAL:
            return True  # a near-identical text is a copy whatever its template
        j, c = self._weighted(a, b, self.templates)
        o = replace(self.overlap(a, b), jaccard=j, containment=c)
        if not strong:
            return self.close(o)  # a brief item the second chance could take is at the floor already
        return (
            self.strong(o)
            or (light and (self._light_template(a, b, c) or self._same_words(a, b)))
            or self._brief_item(a, b, c)
            or self._figures_agree(a, b)
        )

    def _light_template(self, a: str, b: str, weighted_containment: float) -> bool:
        """A copy by its shingles' containment that the weights discount by little (``template_light_share``): the
        two share their own text, not a template's. Copies of one release made by cutting it count as different
        texts, so its wording climbs as a template's does, and a copy at 0.56 containment falls under the
        threshold at 0.54 weighed; items of a template share its boilerplate, which the weights cut by more than a
        sixth once the store has seen a few of them (bench/labels/natural-ar-extra-e.md)."""
        o = self.overlap(a, b)
        return (
            self._strong_by_containment(o)
            and weighted_containment >= self.settings.template_light_share * o.containment
        )

    def _same_words(self, a: str, b: str) -> bool:
        """A copy by its shingles' containment whose words (by rarity: the rewrite score) the other text holds nearly
        all of (``template_same_words``). Outlets' cuts of one statement of a daily series (a civil defence or police
        spokesman's) share the series' wording, which the weights discount by a quarter or more, and they share the
        day's words too: the casualties' nationalities, the place, the names. Two items of a template differ in such
        words (cables to other heads of state score 0.90-0.91); forecasts of consecutive days, which name the same
        regions, can reach 0.92 (docs/benchmarks.md). Through ``_rewrite``, so its guards hold: a pair whose shared
        shingles are mostly a template's wording is no copy by its words."""
        threshold = self.settings.template_same_words
        o = self.overlap(a, b)
        return bool(threshold) and self._strong_by_containment(o) and self._rewrite(a, b, o, threshold) is not None

    def _figures_agree(self, a: str, b: str) -> bool:
        """Copies by their shingles that share a distinctive figure (docsieve/figures.py ``shared``), and put no other
        figures in the same words: one item's count or sum, which the template's other items do not repeat. The
        weights discount a series' wording (the Passports directorate's daily count of Yemenis whose status was
        corrected), and two cuts of one day's release share its figure."""
        if self.figures_of is None or not self.strong(self.overlap(a, b)):
            return False
        found = self.read_figures([a, b])
        figures = shared(found[a], found[b])
        if not figures or self.rewrites is None:
            return bool(figures)
        # A figure many stored texts hold (the words the rewrite stage counts) is boilerplate: a footer's telephone
        # number, every item of a publication's. A figure written with separators ("363,378") is no word: kept.
        counts = self.rewrites.counts
        return any(
            int(counts.word_counts(ids).max(initial=0)) <= COMMON_FIGURE_TEXTS
            for ids in stored_word_sets(sorted(figures), self.settings.word_stems)
        )

    def _brief_item(self, a: str, b: str, weighted_containment: float) -> bool:
        """An excerpt that the weights leave just short: a brief item inside a longer text, at the chain floor
        weighed, whose words (by rarity) the longer text holds at the rewrite stage's threshold. A brief item's
        own words are often a region's or an office's stock phrases, which the weights count as boilerplate,
        while the item inside a roundup of other items on its template (a cable among cables) lacks its names."""
        if self.rewrites is None or weighted_containment < self.settings.containment_floor:
            return False
        sizes = sorted((len(self.shingles[a]), len(self.shingles[b])))
        if sizes[0] * 2 > sizes[1]:
            return False  # not an excerpt: two texts of about one length
        return self._rewrite(a, b, self.overlap(a, b)) is not None

    def items_apart(self, a: str, b: str) -> bool:
        """Whether two texts are different items of one template: other weekdays or other figures in the same
        words."""
        return self.days_apart(a, b) or self.figures_apart(a, b)

    def figures_apart(self, a: str, b: str) -> bool:
        """Whether two texts put different figures in the same words (docsieve/figures.py)."""
        if self.figures_of is None or len(self.read_figures([a])[a]) < FIGURES_APART:
            return False  # too few figures to differ in: the other's are not read
        found = self.read_figures([b])
        return apart(found[a], found[b])

    def read_figures(self, ids: Iterable[str]) -> dict[str, Figures]:
        """Read the figures of these records at once (a batch's likely checks: one query)."""
        return _read_into(self._figures, self.figures_of, ids, ())

    def days_apart(self, a: str, b: str) -> bool:
        """Whether two texts name different weekdays in the same words (docsieve/dates.py): items of a
        template on different days. A text without weekdays reads nothing more."""
        if self.days_of is None:
            return False
        for i in (a, b):
            self.read_days([i])
            if not self._days[i]:
                return False
        if not disagree(self._days[a], self._days[b]):
            return False
        return not self._reprint(a, b) or disagree(self._days[a], self._days[b], by_publication=False)

    def _reprint(self, a: str, b: str) -> bool:
        """One text nearly all inside the other (REPRINT): a day it names only by its publication ("for this
        day") is then the other's day, printed late."""
        o = self.overlap(a, b)
        return o.containment >= REPRINT and o.smaller >= self.settings.min_containment_shingles

    def read_marks_against(self, against: dict[str, list[str]]) -> None:
        """Before records are checked against others (``against``: each record's), the days and figures they need
        read at once: the others' days of those that name a day, the others' figures of those with figures enough
        to differ in."""
        if self.days_of is not None:
            days = self.read_days(against)
            self.read_days(other for one, others in against.items() if days[one] for other in others)
        if self.figures_of is not None:
            figures = self.read_figures(against)
            self.read_figures(
                other for one, others in against.items() if len(figures[one]) >= FIGURES_APART for other in others
            )

    def _read_marks(self, ids: list[str]) -> None:
        """Read the days and figures of these records at once, before they are checked against each other."""
        if self.days_of is not None:
            self.read_days(ids)
        if self.figures_of is not None:
            self.read_figures(ids)

    def read_days(self, ids: Iterable[str]) -> dict[str, Slots]:
        """Read the weekday slots of these records at once (a batch's likely checks: one query)."""
        return _read_into(self._days, self.days_of, ids, {})

    def _apart(self, a: str, b: str) -> bool:
        """Two excerpts of one canonical that share next to nothing: different items of a roundup, not
        two cuts of one release (those share their lead)."""
        return self.overlap(a, b).containment < DISJOINT

    def close(self, o: Overlap) -> bool:
        """Close enough to a canonical to be a member through another member (the chain floor)."""
        s = self.settings
        return o.jaccard >= s.jaccard_floor or (
            o.containment >= s.containment_floor and o.smaller >= s.min_containment_shingles
        )

    def _method(self, o: Overlap, found_exact: bool) -> Method:
        """How a copy was found: by its text's hash, else by the measure that says most."""
        if found_exact:
            return Method.EXACT
        return Method.NEAR if o.jaccard >= self.settings.jaccard_floor else Method.CONTAINMENT

    # Decisions ----------------------------------------------------------------------------------

    def add_exact(self, record: Placement, copy_of: str) -> None:
        """A document with the same normalized text as a stored or earlier record: it joins that
        record's story, with that record's overlap with the canonical."""
        self._relied[record.id] = [copy_of]
        source = self.placements[copy_of]
        story = source.story_id
        canonical = self.canonical_of[story]
        self._place(record, story, canonical, self.overlap(record.id, canonical), found_exact=True)
        self.new_records.add(record.id)
        self._maybe_take_over(record.id, story)

    def decide(self, record: Placement, candidates: list[str], near: Iterable[str] = ()) -> None:
        """Place a new (non-exact) record; ``candidates`` are records (stored, or earlier in the batch)
        it is a strong copy of, best first; ``near``: those below the thresholds but at the rewrite stage's
        floor, for that stage."""
        self._relied[record.id] = [*candidates, *near]
        options: list[tuple[str, str, Overlap, bool]] = []  # story, canonical, overlap, strong?
        light: set[str] = set()
        for story in dict.fromkeys(self.placements[c].story_id for c in candidates):
            canonical = self.canonical_of[story]
            o = self.overlap(record.id, canonical)
            # Strong when the overlap passes the thresholds with template boilerplate weighed too, or the weights
            # take little of it or the other text holds nearly all its words (``template_light_share``,
            # ``template_same_words``, ranked after); else a chain option when it stays above the floor both ways.
            if self.strong(o) and self.beyond_template(record.id, canonical, strong=True, light=False):
                options.append((story, canonical, o, True))
            elif self.strong(o) and self.beyond_template(record.id, canonical, strong=True):
                options.append((story, canonical, o, True))
                light.add(story)
            elif (
                self.close(o)
                and self.beyond_template(record.id, canonical, strong=False)
                and any(
                    self.beyond_template(record.id, c, strong=True)
                    for c in candidates
                    if self.placements[c].story_id == story
                )
            ):
                options.append((story, canonical, o, False))
        # A story only those two rules accept comes after one the weights accept: it is often the same
        # story split in two (a copy that founded its own), which the record then holds rather than joins (_hold).
        if light and any(strong and story not in light for story, _, _, strong in options):
            options = [x for x in options if x[0] not in light]
        if not options and (rewritten := self._rewritten(record, near, candidates)) is not None:
            story, canonical, o, score = rewritten
            self._place(record, story, canonical, o, rewrite=score)
            self.new_records.add(record.id)
            self.different.add(record.id)
            # Published first, it takes the story over only if every member stays (a copy of the old canonical
            # is often no copy of a rewrite of it, and would have to leave).
            if self._keeps_whole(record.id, story):
                self._maybe_take_over(record.id, story)
        else:
            self._choose(record, options, candidates)
        bridged = self._hold(record, options, candidates)  # a rewrite too may carry other stories' items
        if self.settings.merge_split_stories:
            self._merge_bridged(record.id, bridged)

    def _rewritten(
        self, record: Placement, near: Iterable[str], candidates: Iterable[str] = ()
    ) -> tuple[str, str, Overlap, float] | None:
        """The story whose canonical the record is the best rewrite of, if any: a candidate's story whose
        canonical (not a roundup) the shingles leave under the thresholds, at the floor, with the rewrite
        score at the threshold. The stories of its strong copies (``candidates``) too: a copy of a story's
        rewrite is weighed against the story's canonical, which the index need not have named."""
        best = None
        for story in dict.fromkeys(self.placements[c].story_id for c in [*near, *candidates]):
            canonical = self.canonical_of[story]
            if canonical in self.roundup:
                continue
            o = self.overlap(record.id, canonical)
            if self.strong(o):
                continue  # a strong overlap the template weighting refused stays refused
            chained = self._copies_a_rewrite(record.id, story, candidates)
            threshold = self.settings.rewrite_chain_floor if chained else None
            if (score := self._rewrite(record.id, canonical, o, threshold)) is None:
                continue
            if best is None or score > best[3]:
                best = (story, canonical, o, score)
        return best

    def _copies_a_rewrite(self, record_id: str, story: str, candidates: Iterable[str]) -> bool:
        """Whether the record is a strong copy, beyond template boilerplate, of a member of the story that the rewrite
        stage placed: it is then weighed against the canonical at the stage's chain floor."""
        return any(
            self.placements[c].story_id == story
            and self.placements[c].method is Method.REWRITE
            and self.beyond_template(record_id, c, strong=True)
            for c in candidates
        )

    def _keeps_whole(self, heir: str, story: str) -> bool:
        """Whether every other member of the story would stay with ``heir`` as its canonical: close to it, or a
        rewrite of it."""
        self.read_marks_against({heir: self.members(story)})
        for m in self.members(story):
            if m == heir:
                continue
            self.shingles_for([m])
            if m not in self.shingles:
                continue  # stays unmeasured (see _crown)
            o = self.overlap(heir, m)
            if (not self.close(o) or self.items_apart(heir, m)) and self._rewrite(heir, m, o) is None:
                return False
        return True

    def _rewrite(self, a: str, b: str, o: Overlap, threshold: float | None = None) -> float | None:
        """The rewrite score of two texts, where it makes them copies: at the stage's floor of shingle
        containment (else the link would be one a reader cannot see), and at its threshold (or ``threshold``)."""
        if self.rewrites is None or o.smaller < self.settings.min_containment_shingles:
            return None  # a text too short to measure containment by is too short to call a rewrite
        if o.containment < self.settings.rewrite_floor:
            return None
        if self._mostly_boilerplate(a, b, o) or self.items_apart(a, b):
            return None
        score = self.rewrites.score(a, b)
        return score if score >= (self.settings.rewrite_threshold if threshold is None else threshold) else None

    def _mostly_boilerplate(self, a: str, b: str, o: Overlap) -> bool:
        """The shingles two texts share are mostly template boilerplate: weighed as docsieve/templates.py does,
        less than ``rewrite_template_share`` of their containment is left. Weather forecasts of different days
        share their wording and then their words; a rewrite of one release keeps its rarer phrases."""
        if self.templates is None or not o.containment:
            return False
        return self._weighted(a, b, self.templates)[1] < self.settings.rewrite_template_share * o.containment

    def _weighted(self, a: str, b: str, templates: ShingleCounts) -> tuple[float, float]:
        """Jaccard and containment with template boilerplate weighed (each text's weights made once)."""
        for i in (a, b):
            if i not in self._weights:
                self._weights[i] = templates.weights(self.shingles[i])
        return weighted_overlap(self.shingles[a], self.shingles[b], self._weights[a], self._weights[b])

    def _near_jaccard(self, a: str, b: str, o: Overlap) -> float:
        """The Jaccard by which a document is a near copy of a canonical: with template boilerplate weighed
        (docsieve/templates.py), unless the two are near-identical. Two cables of one template to two heads of
        state share Jaccard 0.53 by their boilerplate, and weighed 0.31, while the cable to the same head of
        state in another outlet keeps 0.43 weighed: the document joins the story it is most alike beyond the
        template, or none as a near copy (bench/labels/near-weighed.md)."""
        if self.templates is None or o.jaccard >= NEAR_IDENTICAL or o.jaccard < self.settings.jaccard_threshold:
            return o.jaccard
        return self._weighted(a, b, self.templates)[0]

    def _hold(
        self, record: Placement, options: list[tuple[str, str, Overlap, bool]], candidates: list[str]
    ) -> list[str]:
        """What holds what across stories: the record holds the other stories whose canonical (or a member
        of which) it contains, and a record of another story that contains the record holds the record's
        story (a long text that joined one story as a copy, and carries other items too). Returns the other
        stories the record is a copy of (a record of which it is a strong copy, beyond template boilerplate):
        what it may bridge (``_merge_bridged``)."""
        mine = record.story_id
        # A copy of a roundup holds the items it carries as the roundup does, however much of the record one is.
        again = record.id in self._roundup_copies
        for story, _, o, strong in options:
            near = o.jaccard >= self.settings.jaccard_threshold and not again
            if strong and story != mine and not o.first_smaller and not near:
                self._link(record.id, story, o.containment, roundup=again)
        held = {story for story, _, o, strong in options if strong}
        bridged: list[str] = []
        for c in candidates:
            p = self.placements[c]
            if p.story_id == mine or c == self.canonical_of.get(mine):
                continue
            o = self.overlap(record.id, c)
            if not self.strong(o) or not self.beyond_template(record.id, c, strong=True):
                continue
            if p.story_id not in bridged:
                bridged.append(p.story_id)
            if o.jaccard >= self.settings.jaccard_threshold:
                continue  # a near copy of another story's record: no excerpt, nothing held
            if o.first_smaller:
                self._link(c, mine, o.containment)
            elif p.story_id not in held:  # a member of another story inside this record: it holds that story
                self._link(record.id, p.story_id, o.containment, roundup=again)
                held.add(p.story_id)
        return bridged

    # One story split in two ---------------------------------------------------------------------

    def _merge_bridged(self, record_id: str, bridged: list[str]) -> None:
        """A record that is a copy of two stories, one joined and one it bridges, may show them to be one story split
        by the order its copies came in: a copy short of the thresholds, or refused by the weights, against one
        canonical founded a story of its own, and later copies joined one or the other. The two become one
        (``_mergeable``): the story whose canonical ranks first by the policy takes the other's records, each placed
        against its canonical as a member is."""
        for other in bridged:
            if (merge := self._mergeable(self.placements[record_id].story_id, other)) is not None:
                self._merge(*merge)

    def _mergeable(self, a: str, b: str) -> tuple[str, str, dict[str, tuple[Overlap, float | None]]] | None:
        """Whether two stories are one split in two: their canonicals are copies of each other at the chain floor with
        template boilerplate weighed (what a copy of a member of one must be of its canonical to join it), of about
        one length (an item inside a longer text is held, not joined: the holds say so), neither a roundup, and
        every record of the story whose canonical ranks second stays with the first's canonical, as a copy at the
        floor or a rewrite (what a take-over asks of every member). If so, the story to keep, the other, and how each
        of the other's records stays (``_kept_by``)."""
        ca, cb = self.canonical_of[a], self.canonical_of[b]
        if a == b or ca in self.roundup or cb in self.roundup:
            return None
        self.shingles_for((ca, cb))
        if ca not in self.shingles or cb not in self.shingles:
            return None
        sizes = sorted((len(self.shingles[ca]), len(self.shingles[cb])))
        if sizes[0] * 2 <= sizes[1]:
            return None
        if not self.close(self.overlap(ca, cb)) or not self.beyond_template(ca, cb, strong=False):
            return None
        first, second = sorted((a, b), key=lambda s: self.placements[self.canonical_of[s]].rank)
        canonical, moving = self.canonical_of[first], self.members(second)
        self.shingles_for(moving)
        self.read_marks_against({canonical: moving})
        kept = {}
        for m in moving:
            if m not in self.shingles or (stays := self._kept_by(canonical, m)) is None:
                return None
            kept[m] = stays
        return first, second, kept

    def _merge(self, story: str, other: str, kept: dict[str, tuple[Overlap, float | None]]) -> None:
        """Every record of ``other`` joins ``story`` as ``kept`` says it stays with its canonical (its overlap, and its
        rewrite score if it stays as a rewrite); ``other`` is no more (a stored one says where it went:
        ``merged_into``), and what held it holds ``story``."""
        canonical = self.canonical_of[story]
        for m, (o, rewrite) in kept.items():
            p = self.placements[m]
            self._place(p, story, canonical, o, found_exact=p.method is Method.EXACT, rewrite=rewrite)
            self._mark(m)
        if other in self.new_stories:  # founded by this batch: never stored
            self.new_stories.discard(other)
        else:
            self.stored_merged.add(other)
        # Kept for one founded by this batch too: a stored story merged into it earlier goes on into ``story`` (the
        # store follows the merges in this order; a row for ``other`` there is none to update).
        self.merged_into[other] = story
        for k in self.links:  # this batch's links to it (the store's are moved when saved)
            if k.story_id == other:
                k.story_id = story

    def _choose(self, record: Placement, options: list[tuple[str, str, Overlap, bool]], candidates: list[str]) -> None:
        alike = {canonical: self._near_jaccard(record.id, canonical, o) for _, canonical, o, _ in options}
        near = [x for x in options if x[3] and alike[x[1]] >= self.settings.jaccard_threshold]
        if near:
            story, canonical, o, _ = max(near, key=lambda x: alike[x[1]])
            if canonical in self.roundup:
                self._roundup_copies.add(record.id)  # a roundup too (``_hold``), should it take the story over
            return self._join(record, story, canonical, o)
        held = [x for x in options if x[3] and not x[2].first_smaller]  # canonicals inside the record
        if len(held) >= 2:
            carried = {story for story, *_ in held} | self._carried(record.id, candidates)
            if (again := self._roundup_again(record.id, candidates, carried)) is not None:
                self._roundup_copies.add(record.id)
                return self._join(record, *again)
        inside = [x for x in options if x[3] and x[2].first_smaller]  # the record inside canonicals
        # Inside a roundup: not a copy of the roundup; the roundup holds the record's story instead.
        within = [(canonical, o) for _, canonical, o, _ in inside if canonical in self.roundup]
        inside = [x for x in inside if x[1] not in self.roundup]
        options = [x for x in options if x[1] not in self.roundup or not x[2].first_smaller]
        self._place_among(record, options, held, inside)
        for canonical, o in within:
            self._link(canonical, record.story_id, o.containment, roundup=True)

    def _carried(self, record_id: str, candidates: list[str]) -> set[str]:
        """The stories whose records (members too) the record carries as items, as ``_hold`` links them: strong copies
        beyond template boilerplate inside it, not near copies of it."""
        carried = set()
        for c in candidates:
            o = self.overlap(record_id, c)
            if o.first_smaller or o.jaccard >= self.settings.jaccard_threshold or not self.strong(o):
                continue
            if self.beyond_template(record_id, c, strong=True):
                carried.add(self.placements[c].story_id)
        return carried

    def _roundup_again(self, record_id: str, candidates: list[str], held: set[str]) -> tuple[str, str, Overlap] | None:
        """A roundup published again, cut or wrapped: the story of a roundup whose canonical the record is a strong
        copy of, and which holds every other story the record holds (``held``: through canonicals and members).
        Its items often came first as stories of their own (the Royal Court's statement and the royal order of one
        leave, published apart and then together), and the record, holding two of them, would otherwise be a
        roundup of its own beside the first, with nothing linking the two. The items are verified beyond template
        boilerplate already, so the roundup need not be: two roundups of one day's cables share the cables' wording,
        which the weights discount (but not other days or figures in the same words). The roundup most contained
        wins."""
        again = []
        for story in dict.fromkeys(self.placements[c].story_id for c in candidates):
            canonical = self.canonical_of[story]
            if canonical not in self.roundup or not held - {story} <= self._holds(canonical):
                continue
            o = self.overlap(record_id, canonical)
            if self.strong(o) and not self.items_apart(record_id, canonical):
                again.append((story, canonical, o))
        return max(again, key=lambda x: x[2].containment, default=None)

    def _holds(self, record_id: str) -> set[str]:
        """The stories a record holds: as stored, and by this batch's links, through this batch's merges."""
        if record_id not in self._held and record_id not in self.new_records:
            self._held.update(self.store.held_stories([record_id]))
            self._held.setdefault(record_id, set())
        held = self._held.get(record_id, set()) | {k.story_id for k in self.links if k.record_id == record_id}
        return {self._merged_story(story) for story in held}

    def _merged_story(self, story: str) -> str:
        """Where a story is now, after this batch's merges (``_merge``)."""
        while story in self.merged_into:
            story = self.merged_into[story]
        return story

    def _place_among(
        self,
        record: Placement,
        options: list[tuple[str, str, Overlap, bool]],
        held: list[tuple[str, str, Overlap, bool]],
        inside: list[tuple[str, str, Overlap, bool]],
    ) -> None:
        if len(held) >= 2:
            return self._roundup(record, [(story, o) for story, _, o, _ in held])
        if inside:
            story, canonical, o, _ = max(inside, key=lambda x: x[2].containment)
            others = [e for e in self._excerpts(story) if self._apart(record.id, e)]
            if others:
                return self._split(story, record)
            return self._join(record, story, canonical, o)
        if held:
            story, canonical, o, _ = held[0]
            return self._join(record, story, canonical, o)
        chain = [x for x in options if not x[3]]
        if chain:
            story, canonical, o, _ = max(chain, key=lambda x: max(x[2].jaccard, x[2].containment))
            return self._join(record, story, canonical, o)
        return self._found(record)

    # Changes ------------------------------------------------------------------------------------

    def _place(
        self,
        record: Placement,
        story: str,
        canonical: str,
        o: Overlap,
        found_exact: bool = False,
        rewrite: float | None = None,
    ) -> None:
        """``rewrite``: placed by the rewrite stage, with this score as its similarity."""
        same = record.content_hash == self.placements[canonical].content_hash
        self.touched_stories.update(x for x in (record.story_id, story) if x)
        record.story_id = story
        record.status = Status.DUPLICATE
        record.method = self._method(o, found_exact)
        record.jaccard, record.containment = (1.0, 1.0) if same else (round(o.jaccard, 4), round(o.containment, 4))
        record.similarity = record.jaccard if record.jaccard >= self.settings.jaccard_floor else record.containment
        if rewrite is not None and not found_exact:
            record.method, record.similarity = Method.REWRITE, round(rewrite, 4)
        self.placements[record.id] = record

    def _place_unmeasured(self, record: Placement, story: str, canonical: str) -> None:
        """A member whose overlap with a new canonical cannot be measured (no shingles kept): it stays, and
        says no figures rather than wrong ones."""
        self._place(record, story, canonical, Overlap(0.0, 0.0, 0, True), found_exact=record.method is Method.EXACT)
        if record.content_hash != self.placements[canonical].content_hash:
            record.jaccard = record.containment = record.similarity = None
        self._mark(record.id)

    def _join(self, record: Placement, story: str, canonical: str, o: Overlap) -> None:
        self._place(record, story, canonical, o)
        self.new_records.add(record.id)
        if o.jaccard < NEAR_IDENTICAL:
            self.different.add(record.id)
        self._maybe_take_over(record.id, story)

    def _found(self, record: Placement) -> None:
        self._new_story(record)
        self.new_records.add(record.id)
        self.different.add(record.id)

    def _new_story(self, record: Placement) -> str:
        """A new story with this record as its canonical."""
        story = self._story_id(record.id)
        self._make_canonical(record, story)
        self.new_stories.add(story)
        self.canonical_of[story] = record.id
        self._members[story] = []
        return story

    def _make_canonical(self, record: Placement, story: str) -> None:
        self.touched_stories.update(x for x in (record.story_id, story) if x)
        record.story_id = story
        record.status = Status.CANONICAL
        record.method = record.jaccard = record.containment = record.similarity = None
        self.placements[record.id] = record

    def _roundup(self, record: Placement, held: list[tuple[str, Overlap]]) -> None:
        self._found(record)
        for story, o in held:
            self._link(record.id, story, o.containment, roundup=True)

    def _link(self, record_id: str, story: str, containment: float, roundup: bool = False) -> None:
        """The record holds the story; both stories change (what one holds, what holds the other)."""
        self.links.append(Link(record_id, story, containment, roundup))
        if roundup:
            self.roundup.add(record_id)
        self.touched_stories.update((story, self.placements[record_id].story_id))

    def _story_id(self, record_id: str) -> str:
        """A story is named after the record that founded it, unless a story has that name already."""
        if record_id not in self._free and not self.store.taken_story_ids([record_id]):
            self._free.add(record_id)  # a stored record's id, not reserved with the batch
        if record_id in self._taken or record_id in self.canonical_of or record_id not in self._free:
            return uuid.uuid4().hex[:20]
        self._taken.add(record_id)
        return record_id

    def _mark(self, record_id: str) -> None:
        if record_id not in self.new_records:
            self.changed_records.add(record_id)

    def _maybe_take_over(self, record_id: str, story: str) -> None:
        """Under ``earliest-published``, a member that ranks before the canonical becomes the canonical."""
        if self.placements[record_id].rank < self.placements[self.canonical_of[story]].rank:
            self._crown(story, record_id, [m for m in self.members(story) if m != record_id])

    def _crown(self, story: str, heir: str, members: list[str]) -> None:
        """``heir`` becomes the story's canonical (a take-over, or a takedown of the canonical). Every other
        member is measured again against it; one no longer close to it leaves for a story of its own (with
        the others that are copies of it), so what a story says stays verified; one whose text cannot be
        measured (no shingles kept) stays, without figures."""
        heir, members = self._first_by_text(heir, members)
        new = self.placements[heir]
        self._make_canonical(new, story)
        self._mark(heir)
        self.canonical_of[story] = heir
        if story not in self.new_stories:
            self.changed_stories.add(story)
        founded: list[str] = []
        leaving: list[tuple[str, str]] = []  # (member, a record with its text), in rank order
        self.read_marks_against({heir: members})
        for m in sorted(members, key=lambda m: self.placements[m].rank):
            p = self.placements[m]
            self.shingles_for([m])
            source = m if m in self.shingles else self._with_text(story, p.content_hash)
            if source is None or heir not in self.shingles:
                self._place_unmeasured(p, story, heir)
                continue
            kept = self._kept_by(heir, source)
            if kept is None:
                leaving.append((m, source))
                continue
            o, rewrite = kept
            if rewrite is not None:  # said as the stage found it, not as a copy at the chain floor
                self._place(p, story, heir, o, found_exact=p.method is Method.EXACT, rewrite=rewrite)
            else:
                # The old canonical with the heir's very text is an exact copy of it now.
                same_text = p.status is Status.CANONICAL and p.content_hash == new.content_hash
                self._place(p, story, heir, o, found_exact=p.method is Method.EXACT or same_text)
            self._mark(m)
        # A strong copy of a rewrite member that stays is weighed at the chain floor, as it was when it joined (once
        # every other member is placed: the rewrite member may rank after it). Only members placed again count: one
        # still to be weighed says how it was placed under the old canonical, and two such could keep each other.
        pending = dict(leaving)
        placed = True
        while placed:  # until no more is placed: a member placed may be what another copies
            placed = False
            for m, source in list(pending.items()):
                if self._stays_as_a_chain_copy(story, heir, m, source, pending):
                    del pending[m]
                    placed = True
        for m, source in pending.items():
            self._rehome(m, source, founded)

    def _stays_as_a_chain_copy(self, story: str, heir: str, m: str, source: str, pending: dict[str, str]) -> bool:
        """Whether a member leaving the new canonical's reach is a strong copy of a rewrite member placed again under
        it, and a rewrite of it at the chain floor: it is then placed so."""
        o = self.overlap(heir, source)
        if self.strong(o):
            return False
        others = [r for r in self.members(story) if r != heir and r not in pending and r in self.shingles]
        copied = [r for r in others if self.strong(self.overlap(source, r))]
        if not self._copies_a_rewrite(source, story, copied):
            return False
        rewrite = self._rewrite(heir, source, o, self.settings.rewrite_chain_floor)
        if rewrite is None:
            return False
        p = self.placements[m]
        self._place(p, story, heir, o, found_exact=p.method is Method.EXACT, rewrite=rewrite)
        self._mark(m)
        return True

    def _first_by_text(self, heir: str, members: list[str]) -> tuple[str, list[str]]:
        """The record to crown, and the others: ``heir``, unless a rewrite member ranking before it would be a copy of
        it by its text (its shingles at the floor, its rewrite score under the threshold: what ``_crown`` places as a
        copy). That member is then the first by the policy among the copies verified by their text, and is crowned
        instead (each turn a record ranking before the last)."""
        first = heir
        while True:
            earlier = [
                m
                for m in members
                if m != first
                and self.placements[m].method is Method.REWRITE
                and self.placements[m].rank < self.placements[first].rank
                and self._copy_by_text(first, m)
            ]
            if not earlier:
                break
            first = min(earlier, key=lambda m: self.placements[m].rank)
        return first, [m for m in [heir, *members] if m != first]

    def _copy_by_text(self, canonical: str, member: str) -> bool:
        """Whether ``_crown`` would place the member under this canonical as a copy by its text (not a rewrite)."""
        self.shingles_for([canonical, member])
        if canonical not in self.shingles or member not in self.shingles:
            return False
        kept = self._kept_by(canonical, member)
        return kept is not None and kept[1] is None

    def _kept_by(self, canonical: str, member: str) -> tuple[Overlap, float | None] | None:
        """How a member stays under a new canonical: as a rewrite of it (with the score), as a copy at the floor (no
        score), or not at all (None). ``member``: a record with the member's text and shingles."""
        o = self.overlap(canonical, member)
        rewrite = None if self.strong(o) else self._rewrite(canonical, member, o)
        if rewrite is not None:
            return o, rewrite
        if self.close(o) and not self.items_apart(canonical, member):
            return o, None
        return None

    def _with_text(self, story: str, content_hash: str) -> str | None:
        """A member of the story with this text whose shingles are kept (records stored before 0008 may
        have none)."""
        for m in self.members(story):
            if self.placements[m].content_hash == content_hash:
                self.shingles_for([m])
                if m in self.shingles:
                    return m
        return None

    def _excerpts(self, story: str) -> list[str]:
        """Members that are excerpts of the canonical: smaller, and not near copies of it."""
        canonical = self.canonical_of[story]
        maybe = [
            m
            for m in self.members(story)
            if m != canonical
            and self.placements[m].status is not Status.CANONICAL
            and self.placements[m].method is not Method.REWRITE  # a rewrite shares too little to be cut from it
            # a near copy is not an excerpt
            and ((j := self.placements[m].jaccard) is None or j < self.settings.jaccard_threshold)
        ]
        self.shingles_for([*maybe, canonical])  # one read for all
        return [m for m in maybe if m in self.shingles and self.overlap(m, canonical).first_smaller]

    def _split(self, story: str, record: Placement) -> None:
        """The story's canonical holds excerpts that are not copies of each other: it is a roundup. Each
        excerpt (and the new record) goes to a story of its own (copies of one another together), and
        the canonical keeps links to them. Its near copies stay its story."""
        canonical = self.canonical_of[story]
        excerpts = self._excerpts(story)
        texts = {self.placements[e].content_hash for e in excerpts}
        exact = [m for m in self.members(story) if m not in excerpts and self.placements[m].content_hash in texts]
        # A rewrite of the roundup is a rewrite of one of its items (or of none): it goes with the excerpts.
        rewrites = [m for m in self.members(story) if self.placements[m].method is Method.REWRITE and m not in exact]
        self.placements[record.id] = record
        self.new_records.add(record.id)
        for m in exact:  # a record stored without shingles (before 0008) is measured by its twin's
            self.shingles_for([m])
            if m not in self.shingles:
                twin = next(e for e in excerpts if self.placements[e].content_hash == self.placements[m].content_hash)
                self.shingles[m] = self.shingles[twin]
        founded: list[str] = []
        self._read_marks([*excerpts, *exact, *rewrites])  # each is checked against the others' new stories
        for m in sorted([*excerpts, *exact, record.id], key=lambda m: self.placements[m].rank):
            self._rehome(m, m, founded)
        self.roundup.add(canonical)
        # A rewrite goes with the item it rewrites; one that rewrites no single item stays with the roundup, unless it
        # is a strong copy (beyond template boilerplate) of a rewrite that went: it follows that rewrite, weighed at
        # the chain floor against its new canonical, as it would join now. Whether it joined through that rewrite or
        # at the threshold (it may have arrived first, and a later rewrite of an item copied it), so the members are
        # weighed again until none more moves.
        moved: dict[str, str] = {}
        waiting = rewrites
        while waiting:
            left = []
            for m in waiting:
                if (found := self._home(m, founded) or self._home_by_chain(m, moved)) is None:
                    left.append(m)
                    continue
                home, rewrite = found
                self._place(
                    self.placements[m],
                    home,
                    self.canonical_of[home],
                    self.overlap(m, self.canonical_of[home]),
                    rewrite=rewrite,
                )
                self._mark(m)
                moved[m] = home
                if rewrite is None:  # a copy by its text (no rewrite): ranking before the canonical, it takes over
                    self._maybe_take_over(m, home)
            if len(left) == len(waiting):
                break
            waiting = left
        # Linked once every rewrite is placed: a copy that took a story over is its canonical now, and an item that
        # left the new canonical (``_crown``) is in a story of its own, which the roundup holds too.
        items = (self.placements[m].story_id for m in [*excerpts, *exact, record.id])
        founded += [s for s in dict.fromkeys(items) if s not in founded and s != story]
        for home in founded:
            containment = self.overlap(self.canonical_of[home], canonical).containment
            self._link(canonical, home, containment, roundup=True)

    def _rehome(self, record_id: str, text_of: str, founded: list[str]) -> None:
        """A record that leaves its story joins the first of ``founded`` whose canonical it is a copy of
        (``text_of``: a record with its text and shingles), else founds a story of its own, added there."""
        p = self.placements[record_id]
        found = self._home(text_of, founded)
        if found is None:
            founded.append(self._new_story(p))
        else:
            home, rewrite = found
            overlap = self.overlap(text_of, self.canonical_of[home])
            self._place(p, home, self.canonical_of[home], overlap, p.method is Method.EXACT, rewrite)
        self._mark(record_id)

    def _home_by_chain(self, record_id: str, moved: dict[str, str]) -> tuple[str, float] | None:
        """The story a rewrite (of ``moved``: member -> its new story) went to, if the record is a strong copy of it
        beyond template boilerplate and a rewrite of that story's canonical at the chain floor, with the score."""
        for member, home in moved.items():
            if not self.beyond_template(record_id, member, strong=True):
                continue
            canonical = self.canonical_of[home]
            floor = self.settings.rewrite_chain_floor
            if (score := self._rewrite(record_id, canonical, self.overlap(record_id, canonical), floor)) is not None:
                return home, score
        return None

    def _home(self, text_of: str, founded: list[str]) -> tuple[str, float | None] | None:
        """The first of ``founded`` whose canonical the text is a copy of, else the first it is a rewrite of
        (with the score)."""
        for s in founded:
            if self.strong(self.overlap(text_of, self.canonical_of[s])) and not self.items_apart(
                text_of, self.canonical_of[s]
            ):
                return s, None
        for s in founded:
            canonical = self.canonical_of[s]
            if (rewrite := self._rewrite(text_of, canonical, self.overlap(text_of, canonical))) is not None:
                return s, rewrite
        return None

    # A batch decided again in part ------------------------------------------------------------------

    def depending_on(self, stories: Iterable[str], records: Iterable[str]) -> set[str]:
        """The records this book decided (a batch's) that must be decided again if ``stories`` (stored ones) have
        changed since and ``records`` (of the batch) have new candidates: those, and every other record of the
        batch in one part with them. A part joins each decided record with the records it was placed among, the
        stories those were in as read, and the story it went to; whatever a decision read or changed (members
        measured, stories founded by a split, links) lies in its part, so parts no decision of another reads
        stand as they were decided (``merged``)."""
        parts = self._parts_of()
        roots = {parts.find(_story_key(s)) for s in stories if _story_key(s) in parts.parent}
        roots |= {parts.find(r) for r in records}
        return {r for r in self._relied if parts.find(r) in roots}

    def merged(self, again: Book, redone: set[str]) -> Book | None:
        """``again`` (this batch's ``redone`` records decided anew, in a book of their own) with what this book
        changed outside their parts: the batch's whole set of changes, for ``save_stories``. None if ``again`` read
        or changed a story or record of a part that stands (the parts should make that impossible; the batch is then
        decided again whole)."""
        parts = self._parts_of()
        roots = {parts.find(r) for r in redone}

        def kept(key: str) -> bool:  # a key no part knows (a story of this batch merged away) is added to none
            return key not in parts.parent or parts.find(key) not in roots

        def standing(key: str) -> bool:
            return key in parts.parent and kept(key)

        read = (again.canonical_of.keys() | again.touched_stories | again.changed_stories) - again.new_stories
        records = again.changed_records | {k.record_id for k in again.links}
        if any(standing(_story_key(s)) for s in read) or any(standing(self._key_of_record(r)) for r in records):
            return None

        for story, canonical in self.canonical_of.items():
            if kept(self._key_of_story(story)):
                again.canonical_of.setdefault(story, canonical)
        again.new_stories |= {x for x in self.new_stories if kept(self._key_of_story(x))}
        again.changed_stories |= {x for x in self.changed_stories if kept(self._key_of_story(x))}
        again.touched_stories |= {x for x in self.touched_stories if kept(self._key_of_story(x))}
        for r in self.changed_records:
            if kept(self._key_of_record(r)):
                again.changed_records.add(r)
                again.placements[r] = self.placements[r]
        again.links += [k for k in self.links if kept(self._key_of_record(k.record_id))]
        for gone, into in self.merged_into.items():
            if kept(self._key_of_story(into)):
                again.merged_into.setdefault(gone, into)
                if gone in self.stored_merged:
                    again.stored_merged.add(gone)
        again.new_records |= self.new_records - redone
        again.different |= self.different - redone
        return again

    def _parts_of(self) -> _Parts:
        if self._parts is None:
            self._parts = _Parts()
            for record, relied in self._relied.items():
                for other in relied:
                    self._parts.join(record, self._key_of_record(other))
                self._parts.join(record, self._key_of_story(self.placements[record].story_id))
        return self._parts

    def _key_of_record(self, record_id: str) -> str:
        """A batch record stands for itself; a stored one for its story as read."""
        if record_id in self._stored_story:
            return _story_key(self._stored_story[record_id])
        return record_id

    def _key_of_story(self, story: str) -> str:
        """A story the batch founded stands for its canonical (the record that founded it, or a stored member that
        a split gave it); a stored one for itself."""
        if story in self.new_stories:
            return self._key_of_record(self.canonical_of[story])
        return _story_key(story)

    def remove(self, record_id: str) -> None:
        """Take a record out of its story (a takedown). A canonical's place goes to the next member by the
        policy; members no longer close to it found stories of their own (copies of one another together)."""
        story = self.placements[record_id].story_id
        self.touched_stories.add(story)
        members = [m for m in self.members(story) if m != record_id]
        if not members:
            self.emptied = True
            return
        if self.canonical_of[story] != record_id:
            return
        # The next by the policy, among the copies verified by their text: a rewrite only when no other is left.
        members.sort(key=lambda m: (self.placements[m].method is Method.REWRITE, self.placements[m].rank))
        heir = members[0]
        self.shingles_for(members)
        if heir not in self.shingles:  # a record stored without shingles (before 0008): those of its text
            source = self._with_text(story, self.placements[heir].content_hash)
            if source is not None:
                self.shingles[heir] = self.shingles[source]
        self._crown(story, heir, members[1:])
        self.heir = self.canonical_of[story]  # a member the heir's text makes a copy may rank before it (_crown)


def _story_key(story: str) -> str:
    return f"story:{story}"  # apart from record ids, which name stories too


class _Parts:
    """Union-find over record and story keys (``Book.depending_on``)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        root = self.parent.setdefault(key, key)
        while root != self.parent[root]:
            root = self.parent[root]
        while key != root:  # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)
