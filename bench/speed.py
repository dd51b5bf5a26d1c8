"""Signature speed and Jaccard-estimate accuracy: docsieve's fingerprint against datasketch and rensa.

    .venv/bin/python bench/speed.py [--corpus ../shared/corpus] [--docs 5000] [--pairs 2000] [--json FILE]

Speed, in one process on the same SaudiNewsNet articles (the first --docs with non-empty content):
docsieve's ``shingle_batch`` over chunks of ``FINGERPRINT_CHUNK`` raw texts (normalization included);
datasketch and rensa as documented, on whitespace word n-grams of the raw text (n = --shingle-size,
5 by default, for docsieve too), one sketch per document (construction included). Best of --repeat
runs, with the order of the methods rotated between runs.

Accuracy: on pairs from ``silver_pairs_dev.tsv`` (pairs with identical content left out: every method
is exact on them) plus random pairs (J near 0), each method's estimate is compared with the exact
Jaccard of that method's own shingle sets. "binomial" is the RMSE of an ideal MinHash with num_perm
independent permutations, sqrt(J(1-J)/num_perm), averaged over the same pairs: the floor to compare to.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rensa
from common import DEFAULT_CORPUS, Article, folder_or_exit, load_articles, machine
from datasketch import MinHash

from docsieve.fingerprint import shingle_batch
from docsieve.prepare import FINGERPRINT_CHUNK
from docsieve.settings import Settings

RENSA_SEED = 42
METHODS = ("docsieve", "datasketch", "rensa")
BANDS = ((0.0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.0))
SMALL = 100  # shingles: below this a sketch of 128 bins is mostly empty bins (one-permutation)


def word_grams(text: str, n: int) -> list[str]:
    """Whitespace word n-grams; a text shorter than n is one gram, as docsieve does."""
    tokens = text.split()
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)] or [" ".join(tokens)]


# --- speed -----------------------------------------------------------------------------------------


def sign_docsieve(texts: Sequence[str], settings: Settings) -> None:
    for start in range(0, len(texts), FINGERPRINT_CHUNK):
        shingle_batch(texts[start : start + FINGERPRINT_CHUNK], settings)


def sign_datasketch(texts: Sequence[str], settings: Settings) -> None:
    for text in texts:
        MinHash(num_perm=settings.num_perm).update_batch(
            [g.encode("utf-8") for g in word_grams(text, settings.shingle_size)]
        )


def sign_rensa(texts: Sequence[str], settings: Settings) -> None:
    for text in texts:
        sketch = rensa.RMinHash(settings.num_perm, RENSA_SEED)
        sketch.update(word_grams(text, settings.shingle_size))
        sketch.digest()


SIGNERS: dict[str, Callable[[Sequence[str], Settings], None]] = {
    "docsieve": sign_docsieve,
    "datasketch": sign_datasketch,
    "rensa": sign_rensa,
}


def time_methods(texts: Sequence[str], settings: Settings, repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each method; the order rotates so that no method always runs first."""
    for signer in SIGNERS.values():  # lookup tables and caches are built once per process, not per run
        signer(texts[:FINGERPRINT_CHUNK], settings)
    runs: dict[str, list[float]] = {name: [] for name in METHODS}
    for r in range(repeat):
        for name in METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]:
            gc.collect()
            started = time.perf_counter()
            SIGNERS[name](texts, settings)
            runs[name].append(time.perf_counter() - started)
    return runs


# --- accuracy --------------------------------------------------------------------------------------


class Sketch(Protocol):
    def jaccard(self, other: Any, /) -> float: ...


@dataclass(frozen=True, slots=True)
class PairResult:
    exact: np.ndarray  # float64[pairs]: exact Jaccard of the method's own shingle sets
    estimate: np.ndarray  # float64[pairs]
    smaller: np.ndarray  # int64[pairs]: shingle count of the smaller document


@dataclass(frozen=True, slots=True)
class ErrorStats:
    pairs: int
    mae: float
    rmse: float
    bias: float  # mean of estimate - exact
    binomial_rmse: float


def choose_pairs(
    folder: Path, articles: dict[str, Article], count: int, rng: random.Random
) -> tuple[list[tuple[str, str]], int]:
    """Three quarters silver pairs (a spread of J from 0.3 up), one quarter random pairs (J near 0).
    Returns the pairs and how many of them are silver."""
    silver = []
    with (folder / "silver_pairs_dev.tsv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            a, b = articles.get(row["id_a"]), articles.get(row["id_b"])
            if a and b and a.content != b.content:
                silver.append((a.id, b.id))
    silver = rng.sample(silver, min(len(silver), count * 3 // 4))
    taken = {frozenset(p) for p in silver}
    ids = sorted(articles)
    randoms: list[tuple[str, str]] = []
    while len(silver) + len(randoms) < count:
        a, b = rng.sample(ids, 2)
        if frozenset((a, b)) not in taken and articles[a].content != articles[b].content:
            taken.add(frozenset((a, b)))
            randoms.append((a, b))
    return silver + randoms, len(silver)


def measure_docsieve(texts: list[str], pairs: list[tuple[int, int]], settings: Settings) -> PairResult:
    signatures, shingles = [], []
    for start in range(0, len(texts), FINGERPRINT_CHUNK):
        batch = shingle_batch(texts[start : start + FINGERPRINT_CHUNK], settings)
        signatures.append(batch.signatures)
        shingles.extend(batch.shingles(i) for i in range(len(batch.signatures)))
    sig = np.concatenate(signatures)
    exact, estimate, smaller = [], [], []
    for a, b in pairs:
        shared = len(np.intersect1d(shingles[a], shingles[b], assume_unique=True))
        exact.append(shared / (len(shingles[a]) + len(shingles[b]) - shared))
        estimate.append(float(np.mean(sig[a] == sig[b])))
        smaller.append(min(len(shingles[a]), len(shingles[b])))
    return PairResult(np.array(exact), np.array(estimate), np.array(smaller))


def measure_sets(
    texts: list[str],
    pairs: list[tuple[int, int]],
    settings: Settings,
    sketch_of: Callable[[list[str]], Sketch],
) -> PairResult:
    """For datasketch and rensa: exact Jaccard of the sets of 5-gram strings, estimate by the sketches."""
    grams = [word_grams(t, settings.shingle_size) for t in texts]
    sets = [set(g) for g in grams]
    sketches = [sketch_of(g) for g in grams]
    exact, estimate, smaller = [], [], []
    for a, b in pairs:
        shared = len(sets[a] & sets[b])
        exact.append(shared / (len(sets[a]) + len(sets[b]) - shared))
        estimate.append(float(sketches[a].jaccard(sketches[b])))
        smaller.append(min(len(sets[a]), len(sets[b])))
    return PairResult(np.array(exact), np.array(estimate), np.array(smaller))


def datasketch_sketch(num_perm: int) -> Callable[[list[str]], Sketch]:
    def sketch(grams: list[str]) -> Sketch:
        m = MinHash(num_perm=num_perm)
        m.update_batch([g.encode("utf-8") for g in grams])
        return m

    return sketch


def rensa_sketch(num_perm: int) -> Callable[[list[str]], Sketch]:
    def sketch(grams: list[str]) -> Sketch:
        m = rensa.RMinHash(num_perm, RENSA_SEED)
        m.update(grams)
        return m

    return sketch


def subsets(result: PairResult) -> dict[str, np.ndarray]:
    """Boolean masks over the pairs, by the method's own exact Jaccard and set sizes."""
    masks = {"all": np.ones(len(result.exact), dtype=bool)}
    for lo, hi in BANDS:
        upper = result.exact <= hi if hi == BANDS[-1][1] else result.exact < hi
        masks[f"J {lo:.1f}-{hi:.1f}"] = (result.exact >= lo) & upper
    masks[f"both >= {SMALL} shingles"] = result.smaller >= SMALL
    masks[f"one < {SMALL} shingles"] = result.smaller < SMALL
    return masks


def error_stats(result: PairResult, mask: np.ndarray, num_perm: int) -> ErrorStats:
    if not mask.any():
        return ErrorStats(0, float("nan"), float("nan"), float("nan"), float("nan"))
    exact, error = result.exact[mask], result.estimate[mask] - result.exact[mask]
    return ErrorStats(
        pairs=int(mask.sum()),
        mae=float(np.mean(np.abs(error))),
        rmse=float(np.sqrt(np.mean(error**2))),
        bias=float(np.mean(error)),
        binomial_rmse=float(np.sqrt(np.mean(exact * (1 - exact) / num_perm))),
    )


# --- report ----------------------------------------------------------------------------------------


def markdown(
    docs: int,
    repeat: int,
    speed: dict[str, float],
    accuracy: dict[str, dict[str, ErrorStats]],
    silver: int,
    total_pairs: int,
    settings: Settings,
) -> str:
    lines = [
        f"Signatures of {docs:,} SaudiNewsNet articles (saudinewsnet-dev, first with non-empty content), "
        f"num_perm {settings.num_perm}, word {settings.shingle_size}-grams, one process, best of {repeat}. "
        f"{machine()}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"rensa {version('rensa')}, datasketch {version('datasketch')}.",
        "",
        "| method | docs/s | docsieve ÷ method |",
        "| --- | ---: | ---: |",
    ]
    for name in METHODS:
        lines.append(f"| {name} | {speed[name]:,.0f} | {speed['docsieve'] / speed[name]:.2f}x |")
    lines += [
        "",
        "Jaccard-estimate error against exact Jaccard of each method's own shingle sets, "
        f"{total_pairs:,} pairs ({silver:,} from silver_pairs_dev.tsv, identical texts left out, "
        f"{total_pairs - silver:,} random). Bands by the method's own exact J. "
        "Cells: MAE / RMSE (pairs), then RMSE ÷ binomial RMSE sqrt(J(1-J)/num_perm) of an ideal MinHash "
        "on the same pairs.",
        "",
        "| pairs | docsieve | datasketch | rensa | docsieve RMSE ÷ binomial | datasketch | rensa |",
        "| --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for subset in accuracy["docsieve"]:
        cells, ratios = [], []
        for name in METHODS:
            s = accuracy[name][subset]
            cells.append(f"{s.mae:.4f} / {s.rmse:.4f} ({s.pairs})" if s.pairs else "– (0)")
            ratios.append(f"{s.rmse / s.binomial_rmse:.2f}" if s.pairs and s.binomial_rmse else "–")
        lines.append(f"| {subset} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    parser.add_argument("--docs", type=int, default=5000, help="articles for the speed runs (default 5000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (default 3)")
    parser.add_argument("--pairs", type=int, default=2000, help="pairs for the accuracy part (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed for choosing pairs")
    parser.add_argument(
        "--shingle-size", type=int, default=5, help="word n-gram size for all three methods (default 5)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    folder = folder_or_exit(args.corpus)
    # Pinned rather than the project default, so that all three methods shingle alike and the figures
    # stay comparable across runs.
    settings = Settings(shingle_size=args.shingle_size, num_perm=128)

    articles = load_articles(folder)
    texts = [a.content for a in articles[: args.docs]]
    print(f"speed: {len(texts):,} articles, best of {args.repeat}", flush=True)
    runs = time_methods(texts, settings, args.repeat)
    speed = {name: len(texts) / min(seconds) for name, seconds in runs.items()}
    for name in METHODS:
        runs_text = ", ".join(f"{s:.2f}" for s in runs[name])
        print(f"  {name:<10} {speed[name]:>9,.0f} docs/s  (runs {runs_text} s)")
    for name in ("rensa", "datasketch"):
        print(f"  docsieve / {name}: {speed['docsieve'] / speed[name]:.2f}x")

    by_id = {a.id: a for a in articles}
    pairs, silver = choose_pairs(folder, by_id, args.pairs, random.Random(args.seed))
    ids = sorted({i for pair in pairs for i in pair})
    position = {doc_id: n for n, doc_id in enumerate(ids)}
    pair_positions = [(position[a], position[b]) for a, b in pairs]
    pair_texts = [by_id[i].content for i in ids]
    print(
        f"\naccuracy: {len(pairs):,} pairs ({silver:,} silver, {len(pairs) - silver:,} random), {len(ids):,} documents"
    )
    results = {
        "docsieve": measure_docsieve(pair_texts, pair_positions, settings),
        "datasketch": measure_sets(pair_texts, pair_positions, settings, datasketch_sketch(settings.num_perm)),
        "rensa": measure_sets(pair_texts, pair_positions, settings, rensa_sketch(settings.num_perm)),
    }
    accuracy = {
        name: {label: error_stats(r, mask, settings.num_perm) for label, mask in subsets(r).items()}
        for name, r in results.items()
    }
    for name in METHODS:
        print(f"  {name}")
        for label, s in accuracy[name].items():
            print(
                f"    {label:<22} n={s.pairs:<5} MAE {s.mae:.4f}  RMSE {s.rmse:.4f}  "
                f"bias {s.bias:+.4f}  binomial RMSE {s.binomial_rmse:.4f}"
            )

    print("\n--- markdown for docs/benchmarks.md ---\n")
    print(markdown(len(texts), args.repeat, speed, accuracy, silver, len(pairs), settings))

    if args.json:
        figures = {
            "docs": len(texts),
            "repeat": args.repeat,
            "num_perm": settings.num_perm,
            "shingle_size": settings.shingle_size,
            "fingerprint_chunk": FINGERPRINT_CHUNK,
            "environment": {
                "machine": machine(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "rensa": version("rensa"),
                "datasketch": version("datasketch"),
            },
            "speed": {name: {"docs_per_s": speed[name], "runs_s": runs[name]} for name in METHODS},
            "ratios": {f"docsieve/{name}": speed["docsieve"] / speed[name] for name in ("rensa", "datasketch")},
            "pairs": {
                "total": len(pairs),
                "silver": silver,
                "random": len(pairs) - silver,
                "seed": args.seed,
            },
            "accuracy": {name: {k: asdict(v) for k, v in acc.items()} for name, acc in accuracy.items()},
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
