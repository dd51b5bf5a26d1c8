"""Duplicate-detection quality on the labeled sets of the shared corpus, against plain datasketch.

    .venv/bin/python bench/quality.py [--corpus ../shared/corpus] [--set jaccard_threshold=0.5 ...] [--json out.json]

Four parts, each with a fresh SQLite store filled by the real pipeline:

1. The labeled sets alone (natural-ar-dev, derived-dev-ar, derived-dev-en, bbc-dev), each ingested in file order.
   bbc-dev is English news that no rule was written on: its pairs (``bench/labels/bbc-dev.tsv``, every pair of
   its articles with word 3-gram Jaccard 0.1 or containment 0.2 and more, labeled blind) are held out.
2. saudinewsnet-dev: all of it (8 days) in date order into one store, with publication times; the
   natural-ar-dev pairs and the hand-labeled pairs of ``bench/labels/natural-ar-extra-*.tsv`` are scored on it, by set
   and by class.
3. A link check on that store: each copy's word 3-gram overlap with its story's canonical, measured
   on the raw text apart from docsieve.
4. Out of order: the derived sets with seeded random publication times, in a seeded random arrival
   order; every story's canonical should be its earliest-published member.

Two documents are predicted duplicates ("linked") when they are in the same story, or when one's record
holds the other's story (a roundup, ``contains``); "same story" is the stricter prediction. Precision,
recall and F1 are over the labeled pairs (``dup`` / ``1`` positive; ``related`` and ``different``
negative). The baseline in the same run is datasketch as documented: whitespace word 5-grams, no
normalization, ``MinHashLSH(threshold=0.5, num_perm=128)``, a document is a copy of its first
candidate's group.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from datasketch import MinHash, MinHashLSH

from docsieve.models import RawDocument, Status
from docsieve.pipeline import Pipeline
from docsieve.schema import contains, records, stories
from docsieve.settings import Settings
from docsieve.store import Store
from docsieve.templates import ShingleCounts, day_of

ROOT = Path(__file__).resolve().parent.parent
LABELS = Path(__file__).resolve().parent / "labels"
SETS = ("natural-ar-dev", "derived-dev-ar", "derived-dev-en", "bbc-dev")
SNN = "saudinewsnet-dev"
SHUFFLED = "out-of-order"
CLASSES = ("template", "roundup", "short", "instalment", "same-event", "chain")
WEAK_JACCARD, WEAK_CONTAINMENT = 0.2, 0.3  # a link below both is weak
DISAGREE = 0.15  # a stored overlap this far from the independent measure disagrees with it
DECISION_SETTINGS = (
    "shingle_size",
    "num_perm",
    "lsh_bands",
    "lsh_rows",
    "jaccard_threshold",
    "containment_threshold",
    "jaccard_floor",
    "containment_floor",
    "winnow_window",
    "canonical",
)

Predict = Callable[[str, str], bool]


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    duplicate: bool
    groups: list[str]  # for the recall breakdown: strata, edit kinds
    cls: str = ""  # class of a hand-labeled extra pair (template, roundup, ...)
    label: str = ""
    note: str = ""


@dataclass
class LabeledSet:
    name: str
    docs: list[dict]
    pairs: list[Pair]


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    recall_by: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    false_positives: list[Pair] = field(default_factory=list)
    false_negatives: list[Pair] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def figures(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


# Loading ------------------------------------------------------------------------------------------


def load(corpus: Path, name: str) -> LabeledSet:
    folder = corpus / name
    if name == "natural-ar-dev":
        docs = [json.loads(line) for line in (folder / "docs.jsonl").open(encoding="utf-8")]
        pairs = [
            Pair(
                r["id_a"], r["id_b"], r["label"] == "dup", [f"stratum {r['stratum']}"], label=r["label"], note=r["note"]
            )
            for r in _tsv(folder / "pairs.tsv")
        ]
        return LabeledSet(name, docs, pairs)
    if name == "bbc-dev":  # the corpus's articles, the labels ours
        with gzip.open(folder / "bbc-dev.jsonl.gz", "rt", encoding="utf-8") as fh:
            # The title apart (natural-ar-dev's "title" is in its scraped text already, and is not passed again).
            docs = [{"id": d["id"], "headline": d["title"], "text": d["text"]} for d in map(json.loads, fh)]
        pairs = [
            Pair(r["id_a"], r["id_b"], r["label"] == "dup", [r["label"]], label=r["label"], note=r["note"])
            for r in _tsv(LABELS / "bbc-dev.tsv")
        ]
        return LabeledSet(name, docs, pairs)
    with gzip.open(folder / "docs.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    ops = {d["id"]: [op.split(":")[0] for op in d.get("ops", [])] for d in docs}
    pairs = []
    for row in _tsv(folder / "pairs.tsv"):
        kinds = sorted(set(ops.get(row["id_a"], []) + ops.get(row["id_b"], []))) or ["exact copy"]
        pairs.append(Pair(row["id_a"], row["id_b"], row["label"] == "1", kinds, label=row["label"]))
    return LabeledSet(name, docs, pairs)


def raws_of(docs: list[dict]) -> list[RawDocument]:
    """A labeled set's documents as the pipeline takes them (bbc-dev's with their titles apart)."""
    return [RawDocument(source=d["id"], body=d["text"], title=d.get("headline")) for d in docs]


def load_extra(folder: Path = LABELS) -> dict[str, list[Pair]]:
    """The hand-labeled pairs of ``bench/labels/natural-ar-extra-*.tsv``: ``id_a id_b class label jaccard
    containment note`` (``audit.tsv`` is bench/audit.py's)."""
    found: dict[str, list[Pair]] = {}
    for path in sorted(folder.glob("natural-ar-extra-*.tsv")):
        found[path.stem] = [
            Pair(r["id_a"], r["id_b"], r["label"] == "dup", [r["class"]], r["class"], r["label"], r["note"])
            for r in _tsv(path)
        ]
    return found


def _tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:] if line.strip()]


def load_saudinewsnet(folder: Path) -> list[dict]:
    """Every article of saudinewsnet-dev, empty ones included, in date order (day files, then array order).
    Ids are ``snn-<day>-<index in the day's array>``."""
    docs = []
    for path in sorted(folder.glob("*.json.gz")):
        day = path.name.removesuffix(".json.gz")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for k, row in enumerate(json.load(fh)):
                docs.append(
                    {
                        "id": f"snn-{day}-{k}",
                        "title": row.get("title") or "",
                        "content": row.get("content") or "",
                        "published": row.get("date_extracted"),
                        "outlet": row.get("source"),
                    }
                )
    return docs


def snn_raw(doc: dict) -> RawDocument:
    return RawDocument(
        source=doc["id"], body=doc["content"], title=doc["title"], published=doc["published"], outlet=doc["outlet"]
    )


# docsieve -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    id: str
    source: str
    story_id: str
    status: str
    title: str | None
    jaccard: float | None
    containment: float | None


@dataclass
class StoreView:
    """What a store says of stories, read from its tables: records (by source), canonicals, contains links."""

    by_source: dict[str, StoredRecord]
    canonical_of: dict[str, str]  # story id -> canonical record id
    holds: dict[str, set[str]]  # record id -> ids of the stories it contains
    rejected: int
    elapsed: float  # ingest seconds
    by_id: dict[str, StoredRecord] = field(init=False)
    story_holds: dict[str, set[str]] = field(init=False)  # story id -> stories any of its records holds

    def __post_init__(self) -> None:
        self.by_id = {r.id: r for r in self.by_source.values()}
        self.story_holds = defaultdict(set)
        for record_id, story_ids in self.holds.items():
            self.story_holds[self.by_id[record_id].story_id] |= story_ids

    def story(self, source: str) -> str | None:
        record = self.by_source.get(source)
        return record.story_id if record else None

    def same_story(self, a: str, b: str) -> bool:
        story = self.story(a)
        return story is not None and story == self.story(b)

    def linked(self, a: str, b: str) -> bool:
        """The same story, or one's record holds the other's story."""
        if self.same_story(a, b):
            return True
        ra, rb = self.by_source.get(a), self.by_source.get(b)
        if ra is None or rb is None:
            return False
        return rb.story_id in self.holds.get(ra.id, ()) or ra.story_id in self.holds.get(rb.id, ())

    def linked_by_story(self, a: str, b: str) -> bool:
        """Linked, where a story holds what any of its records holds (a copy of a roundup holds its items)."""
        if self.linked(a, b):
            return True
        ra, rb = self.by_source.get(a), self.by_source.get(b)
        if ra is None or rb is None:
            return False
        held = self.story_holds
        return rb.story_id in held.get(ra.story_id, ()) or ra.story_id in held.get(rb.story_id, ())


def ingest(
    raws: list[RawDocument], settings: Settings, grown: Callable[[ShingleCounts], None] | None = None
) -> StoreView:
    """A fresh SQLite store filled by the pipeline with these documents in this order, read back; ``grown``: fills
    its template counts first (``--grown-days``)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/quality.db")
        pipeline = Pipeline(store, settings.with_(store=store.url))
        if grown is not None:
            grown(pipeline.templates)
        started = time.perf_counter()
        pipeline.ingest(raws)
        elapsed = time.perf_counter() - started
        view = read_stories(store)
        store.close()
    view.elapsed = elapsed
    return view


def read_stories(store: Store) -> StoreView:
    columns = (
        records.c.id,
        records.c.source,
        records.c.story_id,
        records.c.status,
        records.c.title,
        records.c.jaccard,
        records.c.containment,
    )
    with store.engine.connect() as conn:
        rejected = conn.scalar(sa.select(sa.func.count()).where(records.c.status == Status.REJECTED)) or 0
        rows = conn.execute(sa.select(*columns).where(records.c.status != Status.REJECTED)).all()
        canonical_of = {
            story: canonical
            for story, canonical in conn.execute(
                sa.select(stories.c.id, stories.c.canonical_id).where(stories.c.merged_into.is_(None))
            )
        }
        holds: dict[str, set[str]] = defaultdict(set)
        for record_id, story_id in conn.execute(sa.select(contains.c.record_id, contains.c.story_id)):
            holds[record_id].add(story_id)
    by_source = {row.source: StoredRecord(*row) for row in rows}
    return StoreView(by_source, canonical_of, dict(holds), rejected, 0.0)


# datasketch ---------------------------------------------------------------------------------------


def datasketch_groups(docs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """(id, text) in arrival order -> the id of each document's group."""
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    groups: dict[str, str] = {}
    position: dict[str, int] = {}
    for doc_id, text in docs:
        position[doc_id] = len(position)
        tokens = text.split()
        grams = {" ".join(tokens[i : i + 5]).encode() for i in range(max(1, len(tokens) - 4))}
        m = MinHash(num_perm=128)
        m.update_batch(list(grams))
        found = lsh.query(m)
        groups[doc_id] = groups[min(found, key=position.__getitem__)] if found else doc_id
        lsh.insert(doc_id, m)
    return groups


def same_group(groups: dict[str, str]) -> Predict:
    def predict(a: str, b: str) -> bool:
        return a in groups and b in groups and groups[a] == groups[b]

    return predict


# Scoring ------------------------------------------------------------------------------------------


def score(pairs: Iterable[Pair], predict: Predict) -> Scores:
    s = Scores()
    for pair in pairs:
        predicted = predict(pair.a, pair.b)
        if pair.duplicate:
            s.tp += predicted
            s.fn += not predicted
            if not predicted:
                s.false_negatives.append(pair)
            for kind in pair.groups:
                s.recall_by[kind][0] += predicted
                s.recall_by[kind][1] += 1
        else:
            s.fp += predicted
            s.tn += not predicted
            if predicted:
                s.false_positives.append(pair)
    return s


def _row(label: str, s: Scores, width: int = 24) -> str:
    return f"  {label:<{width}}{s.precision:>10.4f}{s.recall:>10.4f}{s.f1:>10.4f}{s.fp:>6}{s.fn:>6}"


# Word 3-gram overlap measured without docsieve's code ------------------------------------------

# Arabic spelling variants folded by the second measure: harakat, superscript alef and tatweel dropped,
# alef forms to ا, ى to ي, ة to ه, Arabic-Indic and Persian digits to ASCII.
_MARKS = re.compile("[\u064b-\u065f\u0670\u0640]")
_LETTERS = str.maketrans("أإآٱىة٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "ااااي" + "ه" + "0123456789" * 2)


@cache
def _punctuation() -> dict[int, str]:
    return {c: " " for c in range(0x110000) if unicodedata.category(chr(c)).startswith("P")}


def word_trigrams(text: str, fold: bool = False) -> set[tuple[str, ...]]:
    """Word 3-grams of whitespace tokens once punctuation (Unicode category P) is removed; ``fold`` also
    folds Arabic spelling variants and case. A text of fewer than three words is one gram."""
    if fold:
        text = _MARKS.sub("", text).translate(_LETTERS).casefold()
    tokens = text.translate(_punctuation()).split()
    if len(tokens) < 3:
        return {tuple(tokens)} if tokens else set()
    return set(zip(tokens, tokens[1:], tokens[2:], strict=False))


def overlap(a: set, b: set) -> tuple[float, float]:
    """Jaccard, and containment as shared over the smaller set."""
    if not a or not b:
        return 0.0, 0.0
    shared = len(a & b)
    return shared / len(a | b), shared / min(len(a), len(b))


# Part 1: the labeled sets alone -------------------------------------------------------------------


def run_set(corpus: Path, name: str, settings: Settings) -> tuple[dict, tuple[str, Scores, Scores]]:
    labeled = load(corpus, name)
    view = ingest(raws_of(labeled.docs), settings)
    ours = score(labeled.pairs, view.linked)
    story_only = score(labeled.pairs, view.same_story)
    texts = ((d["id"], f"{d['headline']}\n{d['text']}" if d.get("headline") else d["text"]) for d in labeled.docs)
    base = score(labeled.pairs, same_group(datasketch_groups(texts)))
    positives = sum(p.duplicate for p in labeled.pairs)
    print(
        f"\n{name}: {len(labeled.docs)} docs, {len(labeled.pairs)} labeled pairs ({positives} duplicate), "
        f"docsieve ingest {view.elapsed:.1f} s"
    )
    print(f"  {'':<24}{'precision':>10}{'recall':>10}{'F1':>10}{'FP':>6}{'FN':>6}")
    print(_row("docsieve (linked)", ours))
    print(_row("docsieve same story", story_only))
    print(_row("datasketch defaults", base))
    print(
        f"  recall by {'stratum' if name.startswith('natural') else 'label' if name == 'bbc-dev' else 'edit kind'}:"
        f"{'docsieve':>12}{'datasketch':>12}{'pairs':>7}"
    )
    for kind in sorted(ours.recall_by):
        hit, total = ours.recall_by[kind]
        base_hit = base.recall_by[kind][0]
        print(f"    {kind:<28}{hit / total:>10.3f}{base_hit / total:>12.3f}{total:>7}")
    report = {
        label: s.figures() | {"recall_by": {k: v[0] / v[1] for k, v in s.recall_by.items()}}
        for label, s in (("docsieve", ours), ("docsieve_same_story", story_only), ("datasketch", base))
    }
    report["docs"] = len(labeled.docs)
    report["pairs"] = len(labeled.pairs)
    report["stories"] = len(view.canonical_of)
    if labeled.docs and "origin" in labeled.docs[0]:
        mixed = mixed_stories(story_members(view), {d["id"]: d["origin"] for d in labeled.docs})
        report["stories_mixing_articles"] = mixed
        print(f"  docsieve stories: {len(view.canonical_of)}, of which mixing original articles: {mixed}")
    return report, (name, ours, base)


# Part 2: all of saudinewsnet-dev ------------------------------------------------------------------


@dataclass
class Line:
    """One row of the natural evaluation: a group of pairs scored three ways."""

    name: str
    pairs: list[Pair]
    linked: Scores
    story: Scores
    base: Scores

    def figures(self) -> dict:
        return {
            "pairs": len(self.pairs),
            "dup": sum(p.duplicate for p in self.pairs),
            "docsieve": self.linked.figures(),
            "docsieve_same_story": self.story.figures(),
            "datasketch": self.base.figures(),
        }


def _templated(pair: Pair) -> bool:
    """Whether the labels say the pair is two items of one template: its class, or its labeler's note."""
    return pair.cls == "template" or "template" in pair.note.lower()


def run_saudinewsnet(corpus: Path, settings: Settings, docs: list[dict], view: StoreView) -> tuple[dict, dict]:
    natural = load(corpus, "natural-ar-dev").pairs
    extra = load_extra()
    base_predict = same_group(datasketch_groups((d["id"], f"{d['title']}\n{d['content']}") for d in docs))
    sets: dict[str, list[Pair]] = {"natural-ar-dev": natural, **extra}
    every_new = [p for pairs in extra.values() for p in pairs]  # by class: each as its set labeled it
    new = _unique(every_new)  # in the totals a pair two sets labeled counts once
    missing_labels = sorted(
        {x for p in [*natural, *new] for x in (p.a, p.b)} - {d["id"] for d in docs}
    )  # ids no article has
    unstored = sorted({x for p in [*natural, *new] for x in (p.a, p.b)} - view.by_source.keys() - set(missing_labels))
    repeated = _repeated_pairs(sets)

    def line(name: str, pairs: list[Pair]) -> Line:
        return Line(name, pairs, score(pairs, view.linked), score(pairs, view.same_story), score(pairs, base_predict))

    by_set = [line(name, pairs) for name, pairs in sets.items()]
    if extra:
        by_set.append(line("all new pairs", new))
        by_set.append(line("all pairs", _unique([*natural, *new])))
    classes = [c for c in CLASSES if any(p.cls == c for p in every_new)]
    classes += sorted({p.cls for p in every_new} - set(CLASSES))
    by_class = [line(c, [p for p in every_new if p.cls == c]) for c in classes]
    # Would a story hold what any of its records holds (a copy of a roundup holding the roundup's items)?
    changed = [p for p in _unique([*natural, *new]) if view.linked_by_story(p.a, p.b) != view.linked(p.a, p.b)]
    story_level = {
        "dup_pairs_gained": sum(p.duplicate for p in changed),
        "non_dup_pairs_merged": sum(not p.duplicate for p in changed),
        "pairs": [[p.a, p.b, p.label, p.cls or p.groups[0]] for p in changed],
    }

    print(
        f"\n{SNN}: all {len(docs)} articles in date order into one store with publication times: "
        f"{len(view.by_source)} records ({view.rejected} rejected), {len(view.canonical_of)} stories, "
        f"docsieve ingest {view.elapsed:.1f} s"
    )
    if missing_labels or unstored:
        print(f"  labeled ids with no article: {missing_labels or 'none'}; with no stored record: {unstored or 'none'}")
    if repeated:
        print(f"  {len(repeated)} pairs labeled in more than one set (counted once in the totals):")
        for text in repeated:
            print(f"    {text}")
    header = f"  {'':<22}{'pairs':>6}{'dup':>5} | {'docsieve linked':^34} | {'same story':^22} | {'datasketch':^34}"
    sub = f"  {'':<33} | {'P':>6}{'R':>7}{'F1':>7}{'FP':>7}{'FN':>7} | {'P':>7}{'R':>7}{'F1':>7}"
    sub += f"  | {'P':>6}{'R':>7}{'F1':>7}{'FP':>7}{'FN':>7}"
    for title, lines in (("by set", by_set), ("by class (new pairs)", by_class)):
        print(f"  {title}:")
        print(header)
        print(sub)
        for ln in lines:
            print(_natural_row(ln))
    template = [ln for ln in by_class if ln.name == "template"]
    short = [ln for ln in by_class if ln.name == "short"]
    template_negatives = sum(1 for p in every_new if p.cls == "template" and not p.duplicate)
    # The class counts the template pairs labeled as such (extra-a); templated items of other subjects were labeled
    # in every set, each saying so in its note ("[template]", "template-other", "on one template"...).
    templated = [p for p in _unique([*natural, *new]) if not p.duplicate and _templated(p)]
    templated_line = line("templated, every set", templated)
    short_positives = sum(1 for p in every_new if p.cls == "short" and p.duplicate)
    counts = {
        "template_different_merged": {
            "docsieve": template[0].linked.fp if template else None,
            "datasketch": template[0].base.fp if template else None,
            "of": template_negatives,
        },
        "templated_different_merged": {
            "docsieve": templated_line.linked.fp,
            "datasketch": templated_line.base.fp,
            "of": len(templated),
            "pairs": [[p.a, p.b] for p in templated if view.linked(p.a, p.b)],
        },
        "short_dup_missed": {
            "docsieve": short[0].linked.fn if short else None,
            "datasketch": short[0].base.fn if short else None,
            "of": short_positives,
        },
    }
    for key, text in (
        ("template_different_merged", "template pairs of different subjects merged"),
        ("templated_different_merged", "templated pairs of different subjects merged, every set (class or note)"),
        ("short_dup_missed", "short-item dup pairs missed"),
    ):
        c = counts[key]
        if c["of"]:
            print(f"  {text}: docsieve {c['docsieve']} of {c['of']}, datasketch {c['datasketch']} of {c['of']}")
        else:
            print(f"  {text}: no such pairs labeled yet")
    print(
        f"  if a story held what any of its records holds (a copy of a roundup holding its items): "
        f"{story_level['dup_pairs_gained']} dup pairs gained, {story_level['non_dup_pairs_merged']}"
        " non-dup pairs merged"
    )
    # Each error's own overlap (folded word 3-grams, measured here) against docsieve's thresholds: a pair above
    # them that is not linked was lost by the story rules, one below them is out of a shingle method's reach.
    content = {d["id"]: d["content"] for d in docs}
    errors: dict[str, dict[str, list[dict]]] = {}
    above: Counter[tuple[str, bool]] = Counter()
    print(
        f"\n  docsieve (linked) errors on the labeled pairs, with the pair's own J / C "
        f"(folded word 3-grams; '>': J >= {settings.jaccard_threshold} or C >= {settings.containment_threshold}):"
    )
    for ln in by_set:
        if ln.name.startswith("all "):
            continue
        errors[ln.name] = {}
        for kind, found in (("FP", ln.linked.false_positives), ("FN", ln.linked.false_negatives)):
            errors[ln.name][kind.lower()] = []
            for p in sorted(found, key=lambda p: (p.cls, p.a, p.b)):
                where = p.cls or p.groups[0]
                j, c = overlap(word_trigrams(content[p.a], True), word_trigrams(content[p.b], True))
                strong = j >= settings.jaccard_threshold or c >= settings.containment_threshold
                above[(kind, strong)] += 1
                errors[ln.name][kind.lower()].append(
                    {
                        "a": p.a,
                        "b": p.b,
                        "class": where,
                        "label": p.label,
                        "jaccard": j,
                        "containment": c,
                        "note": p.note,
                    }
                )
                print(
                    f"    {ln.name:<19}{where:<11}{kind} {j:.2f} {c:.2f} {'>' if strong else ' '} {p.a} {p.b}  "
                    f"[{p.label}] {p.note}"
                )
    for kind, what in (("FN", "dup pairs missed"), ("FP", "non-dup pairs linked")):
        print(
            f"  {what}: {above[(kind, True)]} at or above the thresholds on their own overlap, "
            f"{above[(kind, False)]} below"
        )
    held_out = audit_check(view)
    report = {
        "docs": len(docs),
        "records": len(view.by_source),
        "held_out_audit": held_out,
        "rejected": view.rejected,
        "stories": len(view.canonical_of),
        "ingest_s": view.elapsed,
        "by_set": {ln.name: ln.figures() for ln in by_set},
        "by_class": {ln.name: ln.figures() for ln in by_class},
        "counts": counts,
        "story_level_holds": story_level,
        "label_ids_without_article": missing_labels,
        "label_ids_without_record": unstored,
        "errors": errors,
        "errors_above_thresholds": {kind.lower(): above[(kind, True)] for kind in ("FP", "FN")},
        "errors_below_thresholds": {kind.lower(): above[(kind, False)] for kind in ("FP", "FN")},
    }
    return report, {"by_set": by_set, "by_class": by_class, "counts": counts}


AUDIT_SAMPLES = {
    "member": "a copy and its story's canonical",
    "holds": "a record and a story it holds",
    "near-miss": "canonicals of two stories at containment 0.3-0.55",
}


def audit_check(view: StoreView) -> dict[str, dict[str, dict[str, int]]]:
    """The blind audit's pairs (``bench/labels/audit.tsv``: drawn from docsieve's decisions at one commit and
    labeled by hand, never used to design a rule), held out: how many of each sample this store links, by the
    label a person gave them. Its near misses were all apart when drawn: the copies among them this store
    links are recall gained on pairs no rule was chosen on, the others what that costs."""
    rows = _tsv(LABELS / "audit.tsv")
    found: dict[str, dict[str, dict[str, int]]] = {}
    for sample in AUDIT_SAMPLES:
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            if r["sample"] == sample and r["label"] != "unsure":
                c = counts.setdefault(r["label"], {"pairs": 0, "linked": 0})
                c["pairs"] += 1
                c["linked"] += view.linked(r["id_a"], r["id_b"])
        found[sample] = counts
    print("\n  held out: the blind audit's pairs (bench/labels/audit.tsv), linked by this store / labeled so")
    for sample, what in AUDIT_SAMPLES.items():
        parts = ", ".join(f"{label} {c['linked']}/{c['pairs']}" for label, c in sorted(found[sample].items()))
        print(f"    {sample:<10} ({what}): {parts}")
    return found


def _natural_row(ln: Line) -> str:
    dup = sum(p.duplicate for p in ln.pairs)
    a, s, b = ln.linked, ln.story, ln.base
    return (
        f"  {ln.name:<22}{len(ln.pairs):>6}{dup:>5} | {a.precision:>6.3f}{a.recall:>7.3f}{a.f1:>7.3f}{a.fp:>7}{a.fn:>7}"
        f" | {s.precision:>7.3f}{s.recall:>7.3f}{s.f1:>7.3f}"
        f"  | {b.precision:>6.3f}{b.recall:>7.3f}{b.f1:>7.3f}{b.fp:>7}{b.fn:>7}"
    )


def _unique(pairs: list[Pair]) -> list[Pair]:
    seen: set[frozenset[str]] = set()
    kept = []
    for p in pairs:
        if frozenset((p.a, p.b)) not in seen:
            seen.add(frozenset((p.a, p.b)))
            kept.append(p)
    return kept


def _repeated_pairs(sets: dict[str, list[Pair]]) -> list[str]:
    seen: dict[frozenset[str], list[str]] = defaultdict(list)
    for name, pairs in sets.items():
        for p in pairs:
            seen[frozenset((p.a, p.b))].append(f"{name}:{p.label}")
    return [f"{'/'.join(sorted(k))} ({', '.join(v)})" for k, v in seen.items() if len(v) > 1]


# Part 3: the link check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedLink:
    record: StoredRecord
    canonical: StoredRecord
    raw: tuple[float, float]  # Jaccard, containment on the raw content
    folded: tuple[float, float]  # the same with Arabic spelling folded

    def row(self) -> dict:
        return {
            "id": self.record.source,
            "title": self.record.title,
            "canonical": self.canonical.source,
            "canonical_title": self.canonical.title,
            "jaccard": round(self.raw[0], 4),
            "containment": round(self.raw[1], 4),
            "folded_jaccard": round(self.folded[0], 4),
            "folded_containment": round(self.folded[1], 4),
            "stored_jaccard": self.record.jaccard,
            "stored_containment": self.record.containment,
        }


def _weak(measure: tuple[float, float]) -> bool:
    return measure[0] < WEAK_JACCARD and measure[1] < WEAK_CONTAINMENT


def _disagrees(record: StoredRecord, measure: tuple[float, float]) -> tuple[bool, bool]:
    """Whether the stored Jaccard and containment are off the measure by more than ``DISAGREE``."""

    def off(stored: float | None, measured: float) -> bool:
        return stored is None or abs(stored - measured) > DISAGREE

    return off(record.jaccard, measure[0]), off(record.containment, measure[1])


def link_check(docs: list[dict], view: StoreView, weakest: int = 10) -> dict:
    """Each copy's word 3-gram overlap with its story's canonical, measured here without docsieve's code
    on the raw content (the text it was given), against the overlap docsieve stored. The folded measure
    tells spelling variants (which docsieve normalizes) from text that really differs."""
    text = {d["id"]: d["content"] for d in docs}
    grams: dict[tuple[str, bool], set] = {}

    def grams_of(source: str, fold: bool) -> set:
        if (source, fold) not in grams:
            grams[(source, fold)] = word_trigrams(text[source], fold)
        return grams[(source, fold)]

    links = []
    for record in view.by_source.values():
        if record.status == Status.DUPLICATE:
            canonical = view.by_id[view.canonical_of[record.story_id]]
            measures = [overlap(grams_of(record.source, f), grams_of(canonical.source, f)) for f in (False, True)]
            links.append(CheckedLink(record, canonical, *measures))
    sizes = Counter(r.story_id for r in view.by_source.values())
    roundups = [r for r in view.holds if r in view.by_id]
    report: dict = {
        "records": len(view.by_source),
        "stories": len(view.canonical_of),
        "stories_with_copies": sum(1 for n in sizes.values() if n > 1),
        "duplicates": len(links),
        "roundups": len(roundups),
        "roundups_not_canonical": sum(view.by_id[r].status != Status.CANONICAL for r in roundups),
        "contains_links": sum(len(view.holds[r]) for r in roundups),
    }
    print(
        f"\nlink check on the {SNN} store: {report['stories']} stories ({report['stories_with_copies']} with copies), "
        f"{report['duplicates']} copies, {report['roundups']} roundups (records with contains links; "
        f"{report['roundups_not_canonical']} of them now a copy) holding {report['contains_links']} stories"
    )
    print(
        "  each copy's word 3-gram overlap with its canonical, measured without docsieve on the raw content "
        "(punctuation removed), and also with Arabic spelling folded:"
    )
    print(f"  {'':<44}{'raw':>8}{'folded':>8}")
    for key, measure in (("raw", lambda x: x.raw), ("folded", lambda x: x.folded)):
        checked = [_disagrees(x.record, measure(x)) for x in links]
        report[key] = {
            "weak_links": sum(_weak(measure(x)) for x in links),
            "disagree_jaccard": sum(j for j, _ in checked),
            "disagree_containment": sum(c for _, c in checked),
            "disagree_either": sum(j or c for j, c in checked),
            "weakest": [x.row() for x in sorted(links, key=lambda x: (measure(x)[1], measure(x)[0]))[:weakest]],
        }
    for key, text_ in (
        ("weak_links", f"weak links (J < {WEAK_JACCARD} and C < {WEAK_CONTAINMENT})"),
        ("disagree_jaccard", f"stored Jaccard off by > {DISAGREE}"),
        ("disagree_containment", f"stored containment off by > {DISAGREE}"),
        ("disagree_either", "either of them"),
    ):
        print(f"    {text_:<42}{report['raw'][key]:>8}{report['folded'][key]:>8}")
    for key in ("raw", "folded"):
        print(f"  the {weakest} weakest by the {key} measure (by containment, then Jaccard):")
        print(f"    {'raw J':>6}{'C':>6}{'fold J':>7}{'C':>6}{'kept J':>7}{'C':>6}  copy / canonical")
        for w in report[key]["weakest"]:
            print(
                f"    {w['jaccard']:>6.2f}{w['containment']:>6.2f}{w['folded_jaccard']:>7.2f}"
                f"{w['folded_containment']:>6.2f}{_num(w['stored_jaccard']):>7}{_num(w['stored_containment']):>6}"
                f"  {w['id']} {_short(w['title'])}"
            )
            print(f"    {'':<38}  {w['canonical']} {_short(w['canonical_title'])}")
    return report


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _short(title: str | None, width: int = 70) -> str:
    t = re.sub(r"\s+", " ", title or "").strip()
    return t if len(t) <= width else t[: width - 1] + "…"


def story_members(view: StoreView) -> dict[str, list[str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for record in view.by_source.values():
        members[record.story_id].append(record.source)
    return members


def mixed_stories(members: dict[str, list[str]], origin: dict[str, str]) -> int:
    """Stories whose members come from more than one original article (derived sets)."""
    return sum(len({origin[m] for m in sources}) > 1 for sources in members.values())


# Part 4: out of order -----------------------------------------------------------------------------


def run_shuffled(corpus: Path, name: str, settings: Settings, seed: int) -> dict:
    """Seeded random publication times (distinct seconds within 30 days) and a seeded random arrival
    order: stories whose canonical is not their earliest-published member, and F1 on the labeled pairs."""
    labeled = load(corpus, name)
    rng = random.Random(f"{seed}:{name}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = rng.sample(range(30 * 86400), len(labeled.docs))
    published = {d["id"]: start + timedelta(seconds=s) for d, s in zip(labeled.docs, offsets, strict=True)}
    order = list(labeled.docs)
    rng.shuffle(order)
    raws = [RawDocument(source=d["id"], body=d["text"], published=published[d["id"]].isoformat()) for d in order]
    view = ingest(raws, settings)
    members = story_members(view)
    mixed = mixed_stories(members, {d["id"]: d["origin"] for d in labeled.docs})
    wrong = []
    for story, sources in members.items():
        canonical = view.by_id[view.canonical_of[story]].source
        earliest = min(sources, key=published.__getitem__)
        if canonical != earliest:
            wrong.append((story, canonical, earliest))
    ours = score(labeled.pairs, view.linked)
    print(
        f"  {name:<16}{len(labeled.docs):>6}{len(members):>9}{sum(len(m) > 1 for m in members.values()):>13}"
        f"{len(wrong):>24}{mixed:>8}{ours.precision:>10.4f}{ours.recall:>10.4f}{ours.f1:>10.4f}"
    )
    for story, canonical, earliest in wrong[:10]:
        print(f"    story {story}: canonical {canonical}, earliest published {earliest}")
    for kind, found in (("FP", ours.false_positives), ("FN", ours.false_negatives)):
        for p in found[:10]:
            print(f"    {kind} {p.a} {p.b} ({', '.join(p.groups)})")
    return {
        "docs": len(labeled.docs),
        "stories": len(members),
        "stories_with_copies": sum(len(m) > 1 for m in members.values()),
        "canonical_not_earliest": len(wrong),
        "stories_mixing_articles": mixed,
        "examples": [list(w) for w in wrong[:10]],
        "docsieve": ours.figures(),
        "errors": {
            "fp": [[p.a, p.b, *p.groups] for p in ours.false_positives],
            "fn": [[p.a, p.b, *p.groups] for p in ours.false_negatives],
        },
    }


# Markdown -----------------------------------------------------------------------------------------


def markdown(
    rows: list[tuple[str, Scores, Scores]], natural: dict | None, check: dict | None, shuffled: dict[str, dict]
) -> None:
    print("\n| set | docsieve P | docsieve R | docsieve F1 | datasketch P | datasketch R | datasketch F1 |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, base in rows:
        print(
            f"| {name} | {ours.precision:.4f} | {ours.recall:.4f} | {ours.f1:.4f} | "
            f"{base.precision:.4f} | {base.recall:.4f} | {base.f1:.4f} |"
        )
    if natural:
        print(
            "\n| pairs (on all of saudinewsnet-dev) | pairs | dup | docsieve P | R | F1 | FP | FN "
            "| same story F1 | datasketch P | R | F1 | FP | FN |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for ln in [*natural["by_set"], *natural["by_class"]]:
            a, s, b = ln.linked, ln.story, ln.base
            kind = "" if ln in natural["by_set"] else "class "
            name = f"**{ln.name}**" if ln.name.startswith("all ") else f"{kind}{ln.name}"
            print(
                f"| {name} | {len(ln.pairs)} | {sum(p.duplicate for p in ln.pairs)} | {a.precision:.3f} | "
                f"{a.recall:.3f} | {a.f1:.3f} | {a.fp} | {a.fn} | {s.f1:.3f} | {b.precision:.3f} | "
                f"{b.recall:.3f} | {b.f1:.3f} | {b.fp} | {b.fn} |"
            )
        c = natural["counts"]
        t, sh = c["template_different_merged"], c["short_dup_missed"]
        every = c["templated_different_merged"]
        print(
            f"\ntemplate pairs of different subjects merged: docsieve {t['docsieve']} / datasketch {t['datasketch']} "
            f"of {t['of']} (class template), docsieve {every['docsieve']} / datasketch {every['datasketch']} of "
            f"{every['of']} (every set); short-item dup pairs missed: docsieve {sh['docsieve']} / datasketch "
            f"{sh['datasketch']} of {sh['of']}"
        )
    if check:
        print(
            "\n| store (all of saudinewsnet-dev) | records | stories | copies | roundups | weak links "
            f"(J < {WEAK_JACCARD} and C < {WEAK_CONTAINMENT}), raw / folded | stored overlap off by > {DISAGREE}, "
            "raw / folded |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        raw, folded = check["raw"], check["folded"]
        print(
            f"| docsieve defaults | {check['records']} | {check['stories']} | {check['duplicates']} | "
            f"{check['roundups']} | {raw['weak_links']} / {folded['weak_links']} | "
            f"{raw['disagree_either']} / {folded['disagree_either']} |"
        )
    if shuffled:
        print(
            "\n| set, shuffled | docs | stories | canonical not the earliest published | stories mixing articles "
            "| P | R | F1 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in shuffled.items():
            d = r["docsieve"]
            print(
                f"| {name} | {r['docs']} | {r['stories']} | {r['canonical_not_earliest']} | "
                f"{r['stories_mixing_articles']} | {d['precision']:.4f} | {d['recall']:.4f} | {d['f1']:.4f} |"
            )


# Main ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a setting, e.g. --set containment_threshold=0.45",
    )
    parser.add_argument("--only", choices=(*SETS, SNN, SHUFFLED), action="append", help="run only these parts")
    parser.add_argument("--seed", type=int, default=1, help="seed of the out-of-order part")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--grown-days",
        type=int,
        default=0,
        help="count this many days of 1,400 new articles into saudinewsnet-dev's template counts before it "
        "(bench/template_days.py): the counts of a grown store",
    )
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found at {args.corpus}; pass --corpus", file=sys.stderr)
        return 2
    overrides = {}
    for item in args.set:
        name, value = item.split("=", 1)
        kind = type(getattr(Settings(), name))
        overrides[name] = value.lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
    settings = Settings().with_(**overrides)
    print(
        f"settings: shingle_size={settings.shingle_size} num_perm={settings.num_perm} "
        f"bands={settings.lsh_bands}x{settings.lsh_rows} jaccard>={settings.jaccard_threshold} "
        f"containment>={settings.containment_threshold} floors {settings.jaccard_floor}/{settings.containment_floor} "
        f"winnowing window {settings.winnow_window} canonical {settings.canonical}"
    )
    parts = args.only or [*SETS, SNN, SHUFFLED]
    report: dict = {"settings": {k: getattr(settings, k) for k in DECISION_SETTINGS}}
    rows = []
    for name in (p for p in parts if p in SETS):
        report[name], row = run_set(args.corpus, name, settings)
        rows.append(row)
    natural = check = None
    if SNN in parts:
        docs = load_saudinewsnet(args.corpus / SNN)
        grown = None
        if args.grown_days:
            from template_days import grow, shingle_sets

            sets, first = shingle_sets(docs), day_of(datetime(2015, 7, 21, tzinfo=UTC)) - args.grown_days

            def grown(counts: ShingleCounts) -> None:
                for _ in grow(counts, sets, first, args.grown_days, 1400):
                    pass

            print(f"\ntemplate counts grown first by {args.grown_days} days of 1,400 new articles")
        view = ingest([snn_raw(d) for d in docs], settings, grown)
        report[SNN], natural = run_saudinewsnet(args.corpus, settings, docs, view)
        report["link_check"] = check = link_check(docs, view)
    shuffled: dict[str, dict] = {}
    if SHUFFLED in parts:
        print(f"\n{SHUFFLED}: seeded random publication times and arrival order (seed {args.seed})")
        print(
            f"  {'set':<16}{'docs':>6}{'stories':>9}{'with copies':>13}{'canonical not earliest':>24}{'mixed':>8}"
            f"{'precision':>10}{'recall':>10}{'F1':>10}"
        )
        for name in ("derived-dev-ar", "derived-dev-en"):
            shuffled[name] = run_shuffled(args.corpus, name, settings, args.seed)
        report[SHUFFLED] = {"seed": args.seed, **shuffled}
    markdown(rows, natural, check, shuffled)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
