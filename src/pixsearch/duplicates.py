"""True duplicates: groups of indexed images that are the same picture, with the evidence.

Two images are duplicates when their perceptual hashes (``phash``: the upright hash of one
against the eight orientation hashes of the other) are at most ``max_hamming`` bits apart AND
their CLIP vectors agree to at least ``min_cosine``. The hash carries the decision: re-encoded,
resized, rotated, mirrored and metadata-stripped copies land within a few bits, a slight crop
within about a dozen, while distinct photos (even of one scene, a second apart) are mostly 16+
bits apart (measured in ``bench/duplicates.py``). The cosine is a veto against the rare hash
collision of two unrelated pictures (flat or periodic images); it works with any model, as the
hash alone already decides the rest.

With ``similar`` the finder also reports *similar* pairs: photos whose CLIP vectors agree to
``similar_cosine`` though their hashes differ (a burst, a re-framed shot). Those are the model's
judgement and said to be.

Candidates come from Milvus: a Hamming range search in the hash companion collection
(``store.HashIndex``), and for ``similar`` a top-k vector search; the work is bounded by
``Limits`` (images examined, neighbours per image, groups returned).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from . import phash
from .errors import PixsearchError
from .store import Filters, HashIndex, ImageRow, Store

BATCH = 256
"""Query hashes (or vectors) per Milvus search call."""


class DuplicatesError(PixsearchError):
    """The duplicate search cannot run as asked (bad thresholds or limits)."""


@dataclass(frozen=True)
class Rules:
    """What counts as a duplicate (and, with ``similar``, as similar)."""

    max_hamming: int = 12
    """Most differing bits of 64 between two duplicates' hashes (any orientation)."""
    min_cosine: float = 0.80
    """Least CLIP cosine between two duplicates (a veto on hash collisions)."""
    similar: bool = False
    """Also report similar-but-different photos."""
    similar_cosine: float = 0.92
    """Least CLIP cosine for a similar pair."""

    def check(self) -> None:
        if not 0 <= self.max_hamming <= phash.BITS // 2:
            raise DuplicatesError(f"max Hamming distance must be 0..{phash.BITS // 2} bits, not {self.max_hamming}")
        for name, value in (("min cosine", self.min_cosine), ("similar cosine", self.similar_cosine)):
            if not -1.0 <= value <= 1.0:
                raise DuplicatesError(f"{name} must be between -1 and 1, not {value}")


@dataclass(frozen=True)
class Limits:
    """How much one search may do."""

    max_images: int = 0
    """Images examined, in id order (0: all). A capped search says it was."""
    neighbours: int = 32
    """Candidates per image from each Milvus search."""
    max_groups: int = 0
    """Groups returned, largest first (0: all)."""

    def check(self) -> None:
        if self.max_images < 0 or self.max_groups < 0:
            raise DuplicatesError("max images and max groups must be 0 (no cap) or more")
        if not 1 <= self.neighbours <= 1024:
            raise DuplicatesError(f"neighbours per image must be 1..1024, not {self.neighbours}")


@dataclass(frozen=True)
class Pair:
    """Two images found to be the same picture (or similar), and why."""

    a: str
    b: str
    kind: str
    """"duplicate" or "similar"."""
    hamming: int
    """Bits apart (the best orientation)."""
    orientation: int
    """Which orientation of *b* matched *a*'s upright hash (0: as it stands; ``phash.ORIENTATIONS``)."""
    cosine: float


@dataclass(frozen=True)
class Copy:
    """One member of a group, with its evidence against the group's original."""

    id: str
    path: str
    width: int
    height: int
    size: int
    hamming: int
    orientation: int
    cosine: float
    kind: str
    """"original" (the largest, original-looking copy), "duplicate" or "similar"."""


@dataclass(frozen=True)
class Group:
    members: list[Copy]
    """The original first, then the others, nearest first."""

    @property
    def original(self) -> Copy:
        return self.members[0]


@dataclass
class Report:
    groups: list[Group] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    examined: int = 0
    """Images with hashes that were compared."""
    unhashed: int = 0
    """Examined images without a perceptual hash yet (indexed before schema 3: run pixsearch index)."""
    truncated: bool = False
    """max_images or max_groups cut the search short."""


@dataclass
class _Image:
    row: ImageRow
    codes: NDArray[np.uint8]


def find(store: Store, rules: Rules = Rules(), limits: Limits = Limits(), folder: str = "") -> Report:
    """The duplicate groups among the indexed images (at or under *folder*)."""
    rules.check()
    limits.check()
    report = Report()
    images = _hashed_images(store, folder, limits, report)
    pairs: dict[tuple[str, str], Pair] = {}
    for hit in _hash_candidates(store, images, rules, limits):
        pairs.setdefault((hit.a, hit.b), hit)
    if rules.similar:
        for hit in _vector_candidates(store, images, rules, limits, folder):
            pairs.setdefault((hit.a, hit.b), hit)
    vectors = _vectors(store, sorted({i for key in pairs for i in key}))
    accepted = []
    for pair in pairs.values():
        cosine = float(vectors[pair.a] @ vectors[pair.b]) if pair.a in vectors and pair.b in vectors else -1.0
        kind = "duplicate" if pair.hamming <= rules.max_hamming and cosine >= rules.min_cosine else (
            "similar" if rules.similar and cosine >= rules.similar_cosine else "")
        if kind:
            accepted.append(Pair(pair.a, pair.b, kind, pair.hamming, pair.orientation, round(cosine, 4)))
    report.pairs = sorted(accepted, key=lambda p: (p.kind != "duplicate", p.hamming, -p.cosine, p.a, p.b))
    report.groups = _groups(report.pairs, images, vectors)
    if limits.max_groups and len(report.groups) > limits.max_groups:
        report.groups, report.truncated = report.groups[:limits.max_groups], True
        kept = {m.id for g in report.groups for m in g.members}
        report.pairs = [p for p in report.pairs if p.a in kept]
    return report


def _hashed_images(store: Store, folder: str, limits: Limits, report: Report) -> dict[str, _Image]:
    """The examined rows with their hashes, by id (rows without hashes are counted, not kept)."""
    images: dict[str, _Image] = {}
    fields = ("path", "size", "width", "height", "phash")
    for row in store.iter_rows(fields, filter=Filters(folder=folder).expression()):
        if limits.max_images and report.examined + report.unhashed >= limits.max_images:
            report.truncated = True
            break
        text = str(row.get("phash") or "")
        if not text:
            report.unhashed += 1
            continue
        images[row["id"]] = _Image(row=row, codes=phash.from_hex(text))
        report.examined += 1
    return images


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def _hash_candidates(store: Store, images: dict[str, _Image], rules: Rules, limits: Limits) -> Iterator[Pair]:
    """Pairs within max_hamming, found by range searches of each image's upright hash."""
    index = HashIndex(store)
    ids = sorted(images)
    for chunk in _chunks(ids):
        codes = [bytes(images[i].codes[0]) for i in chunk]
        for query, hits in zip(chunk, index.within(codes, rules.max_hamming, limits.neighbours * 8), strict=True):
            best: dict[str, tuple[int, int]] = {}
            for hit in hits:
                if hit.image != query and hit.image in images and hit.image not in best:
                    best[hit.image] = (hit.distance, hit.orientation)
            for other, (distance, orientation) in list(best.items())[:limits.neighbours]:
                yield _pair(query, other, distance, orientation)


def _vector_candidates(store: Store, images: dict[str, _Image], rules: Rules, limits: Limits,
                       folder: str) -> Iterator[Pair]:
    """Pairs whose vectors agree to similar_cosine, found by top-k vector searches."""
    ids = sorted(images)
    where = Filters(folder=folder).expression()
    for chunk in _chunks(ids):
        vectors = _vectors(store, list(chunk))
        present = [i for i in chunk if i in vectors]
        if not present:
            continue
        results = store.search(np.stack([vectors[i] for i in present]), k=limits.neighbours + 1, filter=where,
                               min_score=rules.similar_cosine, output_fields=("path",))
        for query, hits in zip(present, results, strict=True):
            for hit in hits:
                if hit.id != query and hit.id in images:
                    distance, orientation = phash.min_hamming(images[query].codes[0], images[hit.id].codes)
                    yield _pair(query, hit.id, distance, orientation)


def _pair(a: str, b: str, distance: int, orientation: int) -> Pair:
    """A candidate pair in canonical order (the orientation is then that of the later id)."""
    if a > b:
        a, b = b, a
        orientation = _inverse(orientation)
    return Pair(a, b, "", distance, orientation, 0.0)


def _inverse(orientation: int) -> int:
    """The orientation that undoes *orientation* (rotations invert, mirrored ones are their own inverse)."""
    return (4 - orientation) % 4 if orientation < 4 else orientation


def _vectors(store: Store, ids: Sequence[str]) -> dict[str, NDArray[np.float32]]:
    """Unit CLIP vectors by id (fetched in batches)."""
    out: dict[str, NDArray[np.float32]] = {}
    for chunk in _chunks(ids):
        for row in store.get(list(chunk), with_vectors=True):
            vector = np.asarray(row["vector"], dtype=np.float32)
            out[row["id"]] = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return out


def _groups(pairs: Sequence[Pair], images: dict[str, _Image], vectors: dict[str, NDArray[np.float32]]) -> list[Group]:
    """Pairs as star groups: the most original-looking image not yet grouped leads a group of its
    partners not yet grouped, and so on. Not connected components: a chain (a burst frame close to
    a crop that is close to the original) must not merge distinct pictures. Largest groups first."""
    partners: dict[str, set[str]] = {}
    kinds: dict[frozenset[str], str] = {}
    for pair in pairs:
        partners.setdefault(pair.a, set()).add(pair.b)
        partners.setdefault(pair.b, set()).add(pair.a)
        kinds[frozenset((pair.a, pair.b))] = pair.kind
    grouped: set[str] = set()
    groups = []
    for leader in sorted(partners, key=lambda i: _looks_original(images[i].row)):
        if leader in grouped:
            continue
        members = [leader, *sorted(partners[leader] - grouped)]
        if len(members) < 2:
            continue
        grouped.update(members)
        groups.append(_group(members, images, vectors, kinds))
    return sorted(groups, key=lambda g: (-len(g.members), g.original.path))


def _looks_original(row: ImageRow) -> tuple[int, int, str]:
    """Sort key: the largest image first (then the largest file): copies are rarely bigger than their source."""
    return (-int(row["width"]) * int(row["height"]), -int(row["size"]), row["path"])


def _group(ids: list[str], images: dict[str, _Image], vectors: dict[str, NDArray[np.float32]],
           kinds: dict[frozenset[str], str]) -> Group:
    """One group; *ids* start with its leader (the original-looking copy)."""
    ordered = ids
    first = images[ordered[0]]
    copies = []
    for i in ordered:
        distance, orientation = phash.min_hamming(images[i].codes[0], first.codes)
        cosine = float(vectors[i] @ vectors[ordered[0]]) if i in vectors and ordered[0] in vectors else -1.0
        kind = "original" if i == ordered[0] else kinds[frozenset((i, ordered[0]))]
        row = images[i].row
        copies.append(Copy(id=i, path=row["path"], width=int(row["width"]), height=int(row["height"]),
                           size=int(row["size"]), hamming=distance, orientation=orientation,
                           cosine=round(cosine, 4), kind=kind))
    copies[1:] = sorted(copies[1:], key=lambda c: (c.hamming, -c.cosine, c.path))
    return Group(members=copies)
