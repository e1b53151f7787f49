"""The perceptual hashes of an image collection, searchable by Hamming distance in Milvus.

An image row keeps its eight orientation hashes as text (``rows.HASH_FIELD``); this companion
collection, ``<name>__phash``, holds them as 64-bit BINARY_VECTOR rows (one per orientation,
id ``<image id><orientation>``) under a BIN_FLAT index with the HAMMING metric, so that
"every image within d bits of this hash" is one Milvus range search. A companion rather than a
second vector field because a Milvus 2.3 server allows one vector field per collection; Milvus
Lite uses the same layout so both backends run one code path (see ``policy``).

BIN_FLAT is exact: 8 bytes a row, and a scan of a million rows is a few milliseconds of XOR
and popcount, so there is nothing for an approximate index to win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .filters import quote
from .rows import MAX_PHASH
from .schema import HASH_SUFFIX
from .table import Table

ORIENTATIONS = 8
HASH_BYTES = 8
MAX_RANGE_LIMIT = 1024
"""Most neighbours one range-search query may return (bounded work per image)."""


@dataclass(frozen=True)
class HashHit:
    """One stored hash within range of a query hash."""

    image: str
    """Id of the image row it belongs to."""
    orientation: int
    """Which of that image's orientations matched (0: as it stands; see ``phash.ORIENTATIONS``)."""
    distance: int
    """Bits that differ."""


def _codes(text: str) -> list[bytes]:
    """The eight hashes of a row's hex text; ValueError when it is not such text."""
    raw = bytes.fromhex(text)
    if len(text) > MAX_PHASH or len(raw) != ORIENTATIONS * HASH_BYTES:
        raise ValueError(f"not a perceptual hash record: {len(raw)} bytes")
    return [raw[o * HASH_BYTES:(o + 1) * HASH_BYTES] for o in range(ORIENTATIONS)]


class HashIndex:
    """The Hamming-searchable hashes of one image collection."""

    def __init__(self, store: Table, collection: str = ""):
        """*store*: the image collection (or any table on the same connection, with *collection* naming it)."""
        self.name = f"{collection or store.name}{HASH_SUFFIX}"
        self._table = store.sibling(self.name)

    def exists(self) -> bool:
        return self._table.exists()

    def _ensure(self) -> None:
        if self._table.exists():
            return
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description='{"pixsearch_phash": 1}')
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=40)
        schema.add_field("image", DataType.VARCHAR, max_length=32)
        schema.add_field("orientation", DataType.INT64)
        schema.add_field("phash", DataType.BINARY_VECTOR, dim=ORIENTATIONS * HASH_BYTES)
        index = self._table.index_params()
        index.add_index(field_name="phash", index_type="BIN_FLAT", metric_type="HAMMING", params={})
        self._table.create(schema, index)

    def write(self, rows: Iterable[tuple[str, str]]) -> int:
        """Store (image id, hashes as hex) pairs; rows with no hashes ("") are skipped. Returns images written."""
        wire: list[dict[str, Any]] = []
        for image, text in rows:
            if not text:
                continue
            wire.extend({"id": f"{image}{o}", "image": image, "orientation": o, "phash": code}
                        for o, code in enumerate(_codes(text)))
        if wire:
            self._ensure()
            self._table.write(wire)
        return len(wire) // ORIENTATIONS

    def delete(self, images: Iterable[str]) -> None:
        """Forget the hashes of these image ids."""
        ids = [f"{image}{o}" for image in images for o in range(ORIENTATIONS)]
        if ids and self._table.exists():
            self._table.delete(ids)

    def images(self) -> set[str]:
        """Ids of the images whose hashes are stored (one scan of the upright rows)."""
        if not self._table.exists():
            return set()
        return {str(row["image"]) for row in self._table.scan(("image",), filter="orientation == 0")}

    def within(self, codes: Sequence[bytes], distance: int, limit: int,
               images: Sequence[str] = ()) -> list[list[HashHit]]:
        """For each 8-byte hash in *codes*: the stored hashes at most *distance* bits away, nearest first,
        at most *limit* of them (any orientation; Milvus range search: 0 <= d < distance + 1).

        *images*: only among these image ids (none: all)."""
        if not codes or not self._table.exists():
            return [[] for _ in codes]
        limit = max(1, min(limit, MAX_RANGE_LIMIT))
        where = f"image in [{', '.join(quote(i) for i in images)}]" if images else ""
        results = self._table.search_field(
            "phash", list(codes), limit=limit, filter=where, output_fields=("image", "orientation"),
            search_params={"metric_type": "HAMMING", "params": {"radius": distance + 1, "range_filter": 0}})
        out = []
        for hits in results:
            row = []
            for hit in hits:
                entity = dict(hit.get("entity", {}) or {})
                dist = round(float(hit.get("distance", 0.0)))
                if dist <= distance:  # the range is the server's promise; keep it true whatever it returns
                    row.append(HashHit(image=str(entity["image"]), orientation=int(entity["orientation"]),
                                       distance=dist))
            out.append(sorted(row, key=lambda h: (h.distance, h.image, h.orientation)))
        return out

    def drop(self) -> None:
        if self._table.exists():
            self._table.drop_table()
