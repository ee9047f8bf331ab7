"""geoloc.retrieval.postprocess on toy data whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoloc.retrieval import postprocess as post

# mean (3, 5); centred rows (+-1, 0) and (0, +-2): covariance diag(0.5, 2), principal axes y then x
PLUS = np.array([[4.0, 5.0], [2.0, 5.0], [3.0, 7.0], [3.0, 3.0]])


def unit(*v: float) -> np.ndarray:
    v = np.array(v, dtype=np.float64)
    return v / math.sqrt(float(v @ v))


def test_full_whitening_of_a_known_covariance():
    w = post.fit_whitening(PLUS, dims=None, shrinkage=0.0)
    assert w.mean == pytest.approx([3.0, 5.0])
    # first column: the y axis over sqrt(2); second: the x axis over sqrt(0.5) (signs are free)
    assert np.abs(w.projection) == pytest.approx(np.array([[0.0, math.sqrt(2.0)], [1 / math.sqrt(2.0), 0.0]]))
    y = (PLUS - w.mean) @ w.projection
    assert y.T @ y / len(PLUS) == pytest.approx(np.eye(2))
    # applied: centred, whitened and normalised
    assert np.abs(w.apply(np.array([[4.0, 5.0], [3.0, 7.0], [4.0, 7.0]]))) == pytest.approx(
        np.array([[0.0, 1.0], [1.0, 0.0], unit(1 / math.sqrt(2.0) * 2, math.sqrt(2.0))]))


def test_shrinkage_and_fewer_dimensions():
    # eigenvalues 2 and 0.5 (mean 1.25); shrinkage 1 adds 1.25 to both before the inverse square root
    w = post.fit_whitening(PLUS, shrinkage=1.0)
    assert np.abs(w.projection) == pytest.approx(np.array([[0.0, 1 / math.sqrt(1.75)], [1 / math.sqrt(3.25), 0.0]]))
    one = post.fit_whitening(PLUS, dims=1, shrinkage=0.0)
    assert one.dims == 1 and np.abs(one.projection) == pytest.approx(np.array([[0.0], [1 / math.sqrt(2.0)]]))
    assert np.abs(one.apply(np.array([[9.0, 6.0]]))) == pytest.approx(np.array([[1.0]]))


def test_a_direction_without_variance_is_dropped():
    # 3-D points on the plane z = 1: covariance diag(0.5, 2, 0); the z direction cannot be whitened
    x = np.column_stack([PLUS - [3.0, 5.0], np.ones(4)])
    w = post.fit_whitening(x, shrinkage=0.0)
    assert w.dims == 2
    assert w.mean == pytest.approx([0.0, 0.0, 1.0])
    y = (x - w.mean) @ w.projection
    assert y.T @ y / 4 == pytest.approx(np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        post.fit_whitening(x[:1])
    with pytest.raises(ValueError, match="all are the same"):
        post.fit_whitening(np.ones((3, 3)))


# four places (labels 0..3) at y = -3, -1, 1, 3, each seen four times at x = +-10 and y +- 0.5: views
# of one place differ mostly along x (within-place variance 100 along x, 0.25 along y), places differ
# only along y (total variance along y: 0.25 + 5)
PLACES = np.repeat([0, 1, 2, 3], 4)
VIEWS = np.array([[sx, cy + sy] for cy in (-3.0, -1.0, 1.0, 3.0) for sx in (-10.0, 10.0) for sy in (-0.5, 0.5)])


def test_learned_whitening_keeps_the_direction_in_which_places_differ():
    pca = post.fit_whitening(VIEWS, dims=1, shrinkage=0.0)  # PCA keeps x, the largest variance
    assert np.abs(pca.projection) == pytest.approx(np.array([[0.1], [0.0]]))
    learned = post.fit_whitening(VIEWS, dims=1, shrinkage=0.0, places=PLACES)
    # within-place scatter diag(100, 0.25): x over 10, y over 0.5; whitened, y varies most (5.25 / 0.25)
    assert learned.mean == pytest.approx([0.0, 0.0])
    assert np.abs(learned.projection) == pytest.approx(np.array([[0.0], [2.0]]))
    full = post.fit_whitening(VIEWS, shrinkage=0.0, places=PLACES)
    assert np.abs(full.projection) == pytest.approx(np.array([[0.0, 0.1], [2.0, 0.0]]))
    # the nearest other view of a place's view is a view of the same place only after the learned one
    for w, same_place in ((pca, False), (learned, True)):
        y = (VIEWS - w.mean) @ w.projection
        d = np.abs(y - y.T)
        np.fill_diagonal(d, np.inf)
        assert bool((PLACES[d.argmin(axis=1)] == PLACES).all()) is same_place


def test_learned_whitening_shrinkage_and_the_places_it_uses():
    # shrinkage 1 adds the mean within-place eigenvalue (100.25 / 2) before the inverse square root;
    # whitened, x then varies by 100 / 150.125 and y by 5.25 / 50.375: x comes first again
    w = post.fit_whitening(VIEWS, shrinkage=1.0, places=PLACES)
    reg = 100.25 / 2
    assert np.abs(w.projection) == pytest.approx(np.array([[1 / math.sqrt(100 + reg), 0.0],
                                                           [0.0, 1 / math.sqrt(0.25 + reg)]]))
    # a place seen once says nothing of how views differ: the same fit with a lone extra view, whose
    # value only moves the mean
    lone = np.vstack([VIEWS, [[0.0, 8.0]]])
    w = post.fit_whitening(lone, dims=1, shrinkage=0.0, places=np.append(PLACES, 9))
    assert w.mean == pytest.approx([0.0, 8.0 / 17])
    assert np.abs(w.projection) == pytest.approx(np.array([[0.0], [2.0]]))
    with pytest.raises(ValueError, match="a place with at least 2"):
        post.fit_whitening(VIEWS[::4], places=PLACES[::4])
    with pytest.raises(ValueError, match="one place per descriptor: 15 places for 16"):
        post.fit_whitening(VIEWS, places=PLACES[1:])
    with pytest.raises(ValueError, match="views of a place that differ"):
        post.fit_whitening(VIEWS[:, :1] * 0 + PLACES[:, None], places=PLACES)


DB3 = np.array([[0.8, 0.6, 0.0], [0.6, 0.0, 0.8], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def test_alpha_query_expansion_by_hand():
    q = np.array([[1.0, 0.0, 0.0]])  # similarities to DB3: 0.8, 0.6, 0, -1
    # n=2, alpha=3: q + 0.8^3 x1 + 0.6^3 x2 = (1 + 0.512*0.8 + 0.216*0.6, 0.512*0.6, 0.216*0.8)
    assert post.alpha_qe(q, DB3, n=2, alpha=3.0)[0] == pytest.approx(unit(1.5392, 0.3072, 0.1728))
    # n=1, alpha=1: q + 0.8 x1
    assert post.alpha_qe(q, DB3, n=1, alpha=1.0)[0] == pytest.approx(unit(1.64, 0.48, 0.0))
    # all four, alpha=0: plain average of the positively similar ones (x3 at 0 and x4 at -1 add nothing)
    assert post.alpha_qe(q, DB3, n=4, alpha=0.0)[0] == pytest.approx(unit(2.4, 0.6, 0.8))
    # an unnormalised query and database are normalised first
    assert post.alpha_qe(5 * q, 2 * DB3, n=1, alpha=1.0)[0] == pytest.approx(unit(1.64, 0.48, 0.0))


def test_database_side_augmentation_by_hand():
    db = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # a.b = 0.6, a.c = 0, b.c = 0.8
    # n=1, alpha=1: a + 0.6 b; b + 0.8 c; c + 0.8 b (never itself)
    assert post.dba(db, n=1, alpha=1.0) == pytest.approx(
        np.array([unit(1.36, 0.48), unit(0.6, 1.6), unit(0.48, 1.64)]))
    # n=2, alpha=2: a + 0.36 b (c at 0 adds nothing); b + 0.36 a + 0.64 c; c + 0.64 b
    assert post.dba(db, n=2, alpha=2.0) == pytest.approx(
        np.array([unit(1.216, 0.288), unit(0.96, 1.44), unit(0.384, 1.512)]))
    # n beyond the database: every other vector, still never itself twice
    assert post.dba(db, n=10, alpha=2.0) == pytest.approx(post.dba(db, n=2, alpha=2.0))


def test_top_n_breaks_ties_by_column():
    sims = np.array([[0.5, 0.9, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4]])
    assert post.top_n(sims, 2).tolist() == [[1, 0], [3, 2]]
    assert post.top_n(sims, 3).tolist() == [[1, 0, 2], [3, 2, 1]]
    assert post.top_n(sims, 9).tolist() == [[1, 0, 2, 3], [3, 2, 1, 0]]


def test_postprocess_combines_in_order():
    w = post.fit_whitening(PLUS, shrinkage=0.0)
    q, d = np.array([[4.0, 5.0]]), np.array([[4.0, 6.0], [2.0, 5.0], [3.0, 7.0]])
    params = post.PostParams(alpha=1.0, qe_n=1, dba_n=1)
    got_q, got_d = post.postprocess(("whiten", "qe", "dba"), q, d, params, w)
    wq, wd = w.apply(post.normalise(q)), w.apply(post.normalise(d))
    dd = post.dba(wd, 1, 1.0)
    assert got_d == pytest.approx(dd)
    assert got_q == pytest.approx(post.alpha_qe(wq, dd, 1, 1.0))
    assert post.postprocess((), q, d, params)[0][0] == pytest.approx(unit(4.0, 5.0))
    with pytest.raises(ValueError, match="unknown post-processing pca"):
        post.postprocess(("pca",), q, d, params)
    assert post.PostParams(alpha=-1, qe_n=0, whiten_dims=0).problems() == [
        ("alpha", -1, "must be a number >= 0"), ("qe_n", 0, "must be at least 1"),
        ("whiten_dims", 0, "must be at least 1")]
