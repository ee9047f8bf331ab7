"""The vote that turns k neighbours into one position (`geoloc.retrieval.consensus`), by hand."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from geoloc.retrieval.consensus import Consensus, consensus


@dataclass
class N:
    location_id: int
    distance: float
    lat: float
    lng: float


def test_two_close_look_alikes_outvote_one_best_match():
    # location 7 holds the best match (similarity 0.9) but 3 has two neighbours: 0.8 + 0.7 = 1.5 > 0.9
    hits = [N(7, 0.1, 59.1, 18.1), N(3, 0.2, 59.3, 18.3), N(3, 0.3, 59.31, 18.31), N(9, 0.6, 59.9, 18.9)]
    assert consensus(hits) == Consensus(3, 59.3, 18.3, pytest.approx(1.5), 2, 4)


def test_a_tie_goes_to_the_location_with_the_better_ranked_neighbour():
    # 5: 0.6 + 0.4 = 1.0 (ranks 1, 3); 4: 0.5 + 0.5 = 1.0 (ranks 2, 4) -> 5
    hits = [N(5, 0.4, 1.0, 2.0), N(4, 0.5, 3.0, 4.0), N(5, 0.6, 1.5, 2.5), N(4, 0.5, 3.5, 4.5)]
    got = consensus(hits)
    assert (got.location_id, got.lat, got.lng, got.count, got.of) == (5, 1.0, 2.0, 2, 4)
    assert got.votes == pytest.approx(1.0)


def test_no_neighbours_no_consensus():
    assert consensus([]) is None
