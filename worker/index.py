"""The candidate index: LSH band keys and sampled-shingle keys, each pointing at the records that have
them. Candidates for a new document are the records that share keys with it, most shared first.

The embedded default keeps the index in memory: sorted numpy arrays of (key, record) plus a small
overlay of keys added since the last merge. It persists with the store as one keys blob per record
(``records.index_keys``), loaded at start and caught up, inside the store's write lock, with whatever
other processes stored since, so two ``ingest`` runs on one store still see each other's documents.
A table with one row per key was the first design: 57 rows a document made the SQLite writes cost
more than all the rest of the pipeline together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from worker.models import Fingerprint

MERGE_EVERY = 1 << 20  # overlay entries before they are merged into the sorted arrays


def keys_of(fingerprint: Fingerprint) -> np.ndarray:
    """All index keys of a fingerprint, unique."""
    return np.unique(np.concatenate((fingerprint.band_keys, fingerprint.sample_keys)))


class MemoryIndex:
    def __init__(self) -> None:
        self.record_ids: list[str] = []
        self._keys = np.zeros(0, dtype=np.int64)  # sorted
        self._owners = np.zeros(0, dtype=np.int64)  # positions in record_ids, parallel to _keys
        self._overlay: dict[int, list[int]] = {}
        self._overlay_size = 0
        self.last_seq = 0  # the newest store row already in the index

    def __len__(self) -> int:
        return len(self.record_ids)

    def load(self, rows: Iterable[tuple[int, str, bytes]]) -> None:
        """Add (seq, record id, keys blob) rows, in seq order, as stored."""
        keys, owners = [], []
        for seq, record_id, blob in rows:
            position = len(self.record_ids)
            self.record_ids.append(record_id)
            array = np.frombuffer(blob, dtype=np.int64)
            keys.append(array)
            owners.append(np.full(len(array), position, dtype=np.int64))
            self.last_seq = max(self.last_seq, seq)
        if keys:
            self._merge(np.concatenate(keys), np.concatenate(owners))

    def add(self, record_id: str, keys: np.ndarray) -> None:
        position = len(self.record_ids)
        self.record_ids.append(record_id)
        for key in keys.tolist():
            self._overlay.setdefault(key, []).append(position)
        self._overlay_size += len(keys)
        if self._overlay_size >= MERGE_EVERY:
            self._merge_overlay()

    def candidates(self, keys: np.ndarray, limit: int) -> list[str]:
        """Record ids sharing keys with ``keys``, most shared first, at most ``limit``."""
        shared: Counter[int] = Counter()
        if len(self._keys):
            left = np.searchsorted(self._keys, keys, "left")
            right = np.searchsorted(self._keys, keys, "right")
            hit = right > left
            if hit.any():
                owners = np.concatenate([self._owners[a:b] for a, b in zip(left[hit], right[hit], strict=True)])
                shared.update(owners.tolist())
        if self._overlay:
            for key in keys.tolist():
                positions = self._overlay.get(key)
                if positions:
                    shared.update(positions)
        return [self.record_ids[p] for p, _ in shared.most_common(limit)]

    def _merge_overlay(self) -> None:
        keys = np.fromiter((k for k, ps in self._overlay.items() for _ in ps), dtype=np.int64)
        owners = np.fromiter((p for ps in self._overlay.values() for p in ps), dtype=np.int64)
        self._overlay.clear()
        self._overlay_size = 0
        self._merge(keys, owners)

    def _merge(self, keys: np.ndarray, owners: np.ndarray) -> None:
        keys = np.concatenate((self._keys, keys))
        owners = np.concatenate((self._owners, owners))
        order = np.argsort(keys, kind="stable")
        self._keys, self._owners = keys[order], owners[order]
