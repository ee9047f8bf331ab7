"""Turning k neighbours into one predicted position.

The best match alone is fooled by one look-alike; a vote is steadier: every neighbour votes for its
location with its cosine similarity (1 - distance), and the location with the largest sum wins (ties:
the one holding the better-ranked neighbour). Locations of one split are at least a buffer apart, so
voting by location id is voting by place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol


class Vote(Protocol):
    location_id: int
    distance: float
    lat: float
    lng: float


@dataclass(frozen=True)
class Consensus:
    location_id: int
    lat: float
    lng: float
    votes: float  # summed similarity of the neighbours at this location
    count: int  # how many of the neighbours are at this location
    of: int  # how many neighbours voted


def similarity(distance: float) -> float:
    return 1.0 - float(distance)


def consensus(neighbours: Iterable[Vote]) -> Consensus | None:
    """The location with the largest summed similarity among NEIGHBOURS (in rank order); None if empty."""
    neighbours = list(neighbours)
    tally: dict[int, list] = {}
    for rank, n in enumerate(neighbours):
        entry = tally.setdefault(n.location_id, [0.0, 0, rank, n])
        entry[0] += similarity(n.distance)
        entry[1] += 1
    if not tally:
        return None
    location_id, (votes, count, _, first) = max(tally.items(), key=lambda kv: (kv[1][0], -kv[1][2]))
    return Consensus(location_id, first.lat, first.lng, votes, count, len(neighbours))
