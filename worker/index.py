"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the stored records that share keys with it, most shared first.

``BatchIndex`` lays the documents of the batch being decided over the persistent index, so a copy
whose original arrived a few documents earlier in the same batch is found too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from worker.models import Fingerprint


class KeyLookup(Protocol):
    def lookup(self, keys: Iterable[int]) -> dict[int, list[str]]: ...


class BatchIndex:
    def __init__(self, stored_hits: Mapping[int, list[str]]) -> None:
        self._stored = stored_hits
        self._local: dict[int, list[str]] = {}

    def add(self, record_id: str, fingerprint: Fingerprint) -> None:
        for key in _keys(fingerprint):
            self._local.setdefault(key, []).append(record_id)

    def candidates(self, fingerprint: Fingerprint, limit: int) -> list[str]:
        """Record ids sharing a band or a sampled shingle with the fingerprint, most keys shared first."""
        shared: Counter[str] = Counter()
        for key in _keys(fingerprint):
            shared.update(self._stored.get(key, ()))
            shared.update(self._local.get(key, ()))
        return [record_id for record_id, _ in shared.most_common(limit)]


def keys_of(fingerprints: Iterable[Fingerprint]) -> set[int]:
    keys: set[int] = set()
    for fp in fingerprints:
        keys.update(_keys(fp))
    return keys


def all_keys(fingerprint: Fingerprint) -> np.ndarray:
    return np.concatenate((fingerprint.band_keys, fingerprint.sample_keys))


def _keys(fingerprint: Fingerprint) -> list[int]:
    return all_keys(fingerprint).tolist()
