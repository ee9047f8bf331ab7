"""Model building blocks without a database: GeM, the multi-similarity loss, the P x K sampler,
image loading, recall, backbone and weights handling."""

from __future__ import annotations

import math
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from geoloc.errors import ConfigError, InputError
from geoloc.model.backbones import CaffePreprocess, make_backbone
from geoloc.model.data import Augment, augment_batch
from geoloc.model.gem import GeM, L2Normalize
from geoloc.model.loss import mine_pairs, multi_similarity_loss, multi_similarity_terms, pair_masks
from geoloc.model.net import build_model, load_start_weights
from geoloc.model.proxies import PlaceProxies
from geoloc.model.sampler import PKSampler
from geoloc.model.validate import recall_at_k
from model_images import load_images
from retrieval_data import VAL_FOLDER

CHOICES = "mobilenetv3small, mobilenetv3large, efficientnetb0, resnet50"


# ---------------------------------------------------------------- GeM and normalisation

@pytest.mark.parametrize("p", [3.0, 1.0, 2.5])
def test_gem_matches_direct_numpy_formula(p):
    x = np.random.default_rng(1).normal(1.0, 1.0, (2, 4, 5, 3)).astype(np.float32)  # some negatives
    expected = np.mean(np.maximum(x, 1e-6) ** p, axis=(1, 2)) ** (1.0 / p)
    got = GeM(p=p)(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_gem_p_is_trainable_only_on_request():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 2, 2, 1)
    # (mean of the cubes)^(1/3) = ((1 + 8 + 27 + 64) / 4)^(1/3) = 25^(1/3), learned p starting at 3
    np.testing.assert_allclose(GeM(trainable_p=True)(x).numpy(), [[25.0 ** (1 / 3)]], rtol=1e-5)
    fixed, learned = GeM(), GeM(trainable_p=True)
    fixed.build((None, 2, 2, 1))
    learned.build((None, 2, 2, 1))
    assert len(fixed.trainable_weights) == 0 and len(learned.trainable_weights) == 1


def test_l2_normalize_unit_length_and_zero_safe():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(L2Normalize()(x).numpy(), [[0.6, 0.8], [0.0, 0.0]], atol=1e-6)


# ---------------------------------------------------------------- multi-similarity loss

def _unit(*vectors):
    v = np.array(vectors, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ms_loss_zero_when_places_are_separated():
    emb = _unit([1, 0], [1, 0], [0, 1], [0, 1])
    assert float(multi_similarity_loss(emb, [0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-7)
    # without mining the same batch still pays for positives below `base` ... here only the pos term:
    # S_pos = 1: 1/2 log(1 + e^{-2 (1 - 0.5)}), S_neg = 0: 1/50 log(1 + 2 e^{50 (0 - 0.5)}) ~ 1e-12
    expected = 0.5 * math.log(1 + math.exp(-1.0)) + 0.02 * math.log(1 + 2 * math.exp(-25.0))
    assert float(multi_similarity_loss(emb, [0, 0, 1, 1], mine=False)) == pytest.approx(expected, rel=1e-5)


def test_ms_loss_all_identical_embeddings_by_hand():
    emb = _unit([1, 0], [1, 0], [1, 0], [1, 0])
    # every pair has S = 1 and is mined (1 + 0.1 > 1 for negatives, 1 - 0.1 < 1 for positives):
    # per anchor: 1/2 log(1 + e^{-2 * 0.5}) + 1/50 log(1 + 2 e^{50 * 0.5}) = 0.156631 + 0.513863
    expected = 0.5 * math.log(1 + math.exp(-1.0)) + math.log(1 + 2 * math.exp(25.0)) / 50
    assert expected == pytest.approx(0.670494, abs=1e-6)
    assert float(multi_similarity_loss(emb, [0, 0, 1, 1])) == pytest.approx(expected, rel=1e-5)


def _mining_batch() -> np.ndarray:
    """Anchor 0 = (1, 0); its positive (label 0) at cos 0.6, negatives (labels 1 and 2) at cos 0.55 and 0.2."""
    def at(c, sign=1):
        return [c, sign * math.sqrt(1 - c * c)]

    return _unit([1, 0], at(0.6), at(0.55, -1), at(0.2, -1))


def test_ms_mining_keeps_only_hard_pairs_by_hand():
    # the negative at cos 0.55 is hard (0.55 + 0.1 > 0.6), the one at cos 0.2 easy (0.2 + 0.1 < 0.6,
    # dropped); the positive is kept: 0.6 - 0.1 < 0.55.
    emb = _mining_batch()
    terms = multi_similarity_terms(emb, [0, 0, 1, 2]).numpy()
    expected0 = 0.5 * math.log(1 + math.exp(-2 * (0.6 - 0.5))) + math.log(1 + math.exp(50 * (0.55 - 0.5))) / 50
    assert terms[0] == pytest.approx(expected0, rel=1e-4)
    unmined0 = 0.5 * math.log(1 + math.exp(-2 * 0.1)) + math.log(
        1 + math.exp(50 * 0.05) + math.exp(50 * (0.2 - 0.5))) / 50
    assert multi_similarity_terms(emb, [0, 0, 1, 2], mine=False).numpy()[0] == pytest.approx(unmined0, rel=1e-4)
    # anchor 3 has no positive at all: nothing is mined and it costs nothing
    assert terms[3] == pytest.approx(0.0, abs=1e-7)


def test_ms_loss_with_the_place_recognition_constants_by_hand():
    # alpha 1, base 0 (GSV-Cities' setting), beta 50 and margin 0.1 as before: anchor 0 keeps its positive
    # at cos 0.6 and the negative at cos 0.55
    emb = _mining_batch()
    terms = multi_similarity_terms(emb, [0, 0, 1, 2], alpha=1.0, base=0.0).numpy()
    expected0 = math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(50 * 0.55)) / 50
    assert expected0 == pytest.approx(0.437488 + 0.550000, abs=1e-4)
    assert terms[0] == pytest.approx(expected0, rel=1e-4)
    # with a margin of 0 neither pair is hard (the positive at 0.6 is not below the negative at 0.55, nor the
    # negative above the positive): anchor 0 costs nothing
    assert multi_similarity_terms(emb, [0, 0, 1, 2], margin=0.0).numpy()[0] == pytest.approx(0.0, abs=1e-7)


def _one_descent_step(raw: np.ndarray, labels: np.ndarray, lr: float = 0.01):
    """Similarities before and after one plain gradient-descent step of the loss on the embeddings."""
    var = tf.Variable(raw.astype(np.float32))

    def sims():
        e = tf.math.l2_normalize(var, axis=1)
        return tf.matmul(e, e, transpose_b=True).numpy()

    before = sims()
    with tf.GradientTape() as tape:
        loss = multi_similarity_loss(tf.math.l2_normalize(var, axis=1), labels)
    var.assign_sub(lr * tape.gradient(loss, var))
    after_loss = float(multi_similarity_loss(tf.math.l2_normalize(var, axis=1), labels))
    assert after_loss < float(loss)
    return before, sims()


def test_ms_loss_gradient_pulls_positives_together_and_pushes_negatives_apart():
    # two places of two images, all four embeddings close together (every pair is mined)
    labels = np.array([0, 0, 1, 1])
    before, after = _one_descent_step(np.array([[1, .3, 0], [1, 0, .3], [1, -.3, 0], [1, 0, -.3]]), labels)
    pos, neg = (m.numpy() for m in pair_masks(labels))
    assert (after[pos] > before[pos]).all()
    assert (after[neg] < before[neg]).all()


def test_ms_loss_gradient_on_a_random_batch_works_on_the_hardest_pairs():
    labels = np.repeat(np.arange(4), 4)
    raw = np.random.default_rng(0).normal(size=(16, 8))
    before, after = _one_descent_step(raw, labels)
    pos, neg = (m.numpy() for m in pair_masks(labels))
    rows = np.arange(16)
    hardest_pos = np.where(pos, before, 9).argmin(axis=1)
    hardest_neg = np.where(neg, before, -9).argmax(axis=1)
    assert (after[rows, hardest_pos] > before[rows, hardest_pos]).all()
    assert (after[rows, hardest_neg] - before[rows, hardest_neg]).mean() < 0
    mined_pos, mined_neg = (m.numpy() for m in mine_pairs(tf.constant(before), *pair_masks(labels)))
    assert mined_pos.sum() < pos.sum() and mined_neg.sum() < neg.sum()  # mining dropped the easy pairs


# ---------------------------------------------------------------- P x K sampler (unit)

def test_pk_sampler_batches_are_p_places_by_k_images_and_deterministic():
    # 30 places with 6 images, 3 places with 2 images (filled with repeats), 2 places with 1 (skipped)
    place = np.concatenate([np.repeat(np.arange(30), 6), np.repeat([30, 31, 32], 2), [33, 34]])
    sampler = PKSampler(place, places=8, per_place=4, seed=7)
    assert sampler.skipped_places == 2 and sampler.short_places == 3 and len(sampler.groups) == 33
    idx, lab = sampler.epoch(0, steps=20)
    assert idx.shape == lab.shape == (20, 32)
    for b_idx, b_lab in zip(idx, lab):
        assert len(set(b_lab)) == 8
        for g in set(b_lab):
            members = b_idx[b_lab == g]
            assert len(members) == 4 and set(place[members]) == {g}
            if g < 30:
                assert len(set(members)) == 4  # without replacement when the place has enough
    assert not np.isin(place[idx], [33, 34]).any()
    again, _ = PKSampler(place, 8, 4, seed=7).epoch(0, 20)
    other, _ = PKSampler(place, 8, 4, seed=8).epoch(0, 20)
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    # every place appears before any place appears twice within an epoch (permutation order)
    first_cycle = lab.reshape(-1)[:: 4][:33]
    assert len(set(first_cycle.tolist())) >= 32


def _streets(n_streets=6, locations_per_street=10, headings=4, images=3):
    """Streets 5 km apart, each a row of locations 10 m apart; every location has HEADINGS places of
    IMAGES images. Returns per image: place, location and (x, y) metres, and each place's street."""
    place, location, xy = [], [], []
    for street in range(n_streets):
        for j in range(locations_per_street):
            loc = street * locations_per_street + j
            for h in range(headings):
                place += [loc * headings + h] * images
                location += [loc] * images
                xy += [(street * 5000.0, j * 10.0)] * images
    place, location = np.array(place), np.array(location)
    return place, location, np.array(xy), location // locations_per_street


def test_nearby_batches_hold_one_street_and_never_two_headings_of_a_location():
    place, location, xy, _ = _streets()
    sampler = PKSampler(place, places=8, per_place=3, seed=3, batches="nearby",
                        location_of_image=location, xy_of_image=xy)
    idx, lab = sampler.epoch(0, steps=40)
    for b_idx, b_lab in zip(idx, lab):
        assert len(set(b_lab)) == 8
        streets = {int(location[i]) // 10 for i in b_idx}
        assert len(streets) == 1  # the 8 places come from the anchor's street (5 km to the next)
        batch_locations = [int(location[b_idx[b_lab == g][0]]) for g in set(b_lab)]
        assert len(set(batch_locations)) == 8  # one heading per location
        for g in set(b_lab):
            assert set(place[b_idx[b_lab == g]]) == {g}
    again, _ = PKSampler(place, 8, 3, seed=3, batches="nearby", location_of_image=location,
                         xy_of_image=xy).epoch(0, 40)
    np.testing.assert_array_equal(idx, again)
    # random batches of the same data mix the streets
    rnd_idx, _ = PKSampler(place, 8, 3, seed=3).epoch(0, 40)
    assert np.mean([len({int(location[i]) // 10 for i in b}) > 1 for b in rnd_idx]) > 0.9


def test_similar_batches_draw_an_anchor_s_places_from_its_similar_pool_and_the_rest_by_distance():
    place, location, xy, street = _streets()
    street_of_place = {int(p): int(s) for p, s in zip(place, street)}
    # every place of street 0 looks like street 3 (5 km away) to the network; the others have no proxy
    street3 = np.array(sorted(p for p, s in street_of_place.items() if s == 3))
    similar = [street3 if street_of_place[g] == 0 else None for g in range(len(street_of_place))]
    sampler = PKSampler(place, places=8, per_place=3, seed=3, batches="similar", location_of_image=location,
                        xy_of_image=xy)
    idx, lab = sampler.epoch(0, steps=200, similar=similar)
    from_street0 = 0
    for b_lab in lab:
        anchor, others = int(b_lab[0]), {int(g) for g in b_lab} - {int(b_lab[0])}
        assert len(others) == 7
        if street_of_place[anchor] == 0:
            from_street0 += 1
            assert {street_of_place[g] for g in others} == {3}
        else:  # no proxy: its nearby pool, its own street
            assert {street_of_place[g] for g in others} == {street_of_place[anchor]}
    assert 15 <= from_street0 <= 55  # about a sixth of the anchors
    # without pools it is the nearby sampler, batch for batch
    near, _ = PKSampler(place, 8, 3, seed=3, batches="nearby", location_of_image=location,
                        xy_of_image=xy).epoch(0, 40)
    np.testing.assert_array_equal(sampler.epoch(0, 40)[0], near)


def test_place_proxies_are_the_normalised_means_and_pools_skip_the_own_location_and_unseen_places():
    proxies = PlaceProxies(5)
    location = np.array([0, 0, 1, 2, 3])
    assert proxies.pools(location, 2) == [None] * 5  # nothing seen: every place by distance
    proxies.add([0, 1, 2, 3], [[2, 0, 0], [1, 0, 0], [0, 3, 0], [1, 0, 0]])
    proxies.add([3], [[0, 1, 0]])
    proxies.commit()
    np.testing.assert_allclose(proxies.proxies[3], [0.5 ** 0.5, 0.5 ** 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(proxies.proxies[0], [1, 0, 0])
    assert proxies.known.tolist() == [True, True, True, True, False]
    pools = proxies.pools(location, 2)
    # place 0: place 1 shares its location; 3 (0.71) and 2 (0) are the two nearest; 4 has no proxy
    assert pools[0].tolist() == [2, 3] and pools[1].tolist() == [2, 3] and pools[4] is None
    assert pools[2].tolist() == [0, 3]  # 3 is the only similar one; then the first by place number
    assert proxies.pools(location, 1)[0].tolist() == [3]
    # the next epoch sees place 4 only: the others keep their proxies
    proxies.add([4], [[0.6, 0.8, 0]])
    saved = {k: v.copy() for k, v in proxies.arrays().items()}
    proxies.commit()
    assert proxies.pools(location, 2)[0].tolist() == [3, 4] and proxies.pools(location, 1)[2].tolist() == [4]
    # a checkpoint taken before that commit gives the same proxies once committed
    again = PlaceProxies(5)
    again.load(saved)
    again.commit()
    np.testing.assert_array_equal(again.proxies, proxies.proxies)
    with pytest.raises(ValueError, match="proxies of 5 places, the run has 6"):
        PlaceProxies(6).load(saved)


def test_nearby_batches_need_locations_and_enough_of_them():
    place, location, xy, _ = _streets(n_streets=1, locations_per_street=5)
    with pytest.raises(ConfigError, match="nearby batches need"):
        PKSampler(place, 8, 3, seed=0, batches="nearby")
    with pytest.raises(InputError, match=r"^only 5 locations among the training places, fewer than --places 8") as e:
        PKSampler(place, 8, 3, seed=0, batches="nearby", location_of_image=location, xy_of_image=xy)
    assert "--batches random" in e.value.hint
    with pytest.raises(ConfigError, match="similar batches need"):
        PKSampler(place, 8, 3, seed=0, batches="similar")
    with pytest.raises(ConfigError, match="unknown batches 'near' \\(choose random, nearby or similar\\)"):
        PKSampler(place, 8, 3, seed=0, batches="near")


def test_pk_sampler_needs_enough_places():
    with pytest.raises(InputError, match=r"^only 3 places with 2\+ images, fewer than --places 8$"):
        PKSampler(np.repeat(np.arange(3), 5), places=8, per_place=4, seed=0)


# ---------------------------------------------------------------- recall

def test_recall_at_k_by_hand():
    db = _unit([1, 0], [0, 1], [-1, 0], [0, -1])
    db_loc = np.array([10, 20, 30, 40])
    q = _unit([1, 0.1], [0.1, 1], [-1, -0.5])
    q_loc = np.array([10, 30, 40])
    # q0: top-1 is 10 (hit); q1: top-1 20, then 10 (cos 0.1) / 30 (-0.1) ... 30 third: hit at rank 3;
    # q2: top-1 30 then 40: hit at rank 2
    r = recall_at_k(q, q_loc, db, db_loc, ks=(1, 2, 3))
    assert r == {"recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(2 / 3), "recall@3": 1.0}


# ---------------------------------------------------------------- images

def test_load_images_real_files_and_exact_errors(shared_data, tmp_path):
    files = sorted((shared_data / "images" / VAL_FOLDER).rglob("*.jpg"))[:3]
    images = load_images(files, 64)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.std() > 10
    same = load_images(files[:1], 224)  # the shared crops are 224 px: loaded without resampling
    raw = tf.io.decode_jpeg(tf.io.read_file(str(files[0]))).numpy()
    np.testing.assert_array_equal(same[0], raw.astype(np.float32))

    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(InputError) as err:
        load_images([files[0], text], 64)
    assert str(err.value) == f"{text}: not an image (unrecognised file format)"  # geoloc.imagefile's words

    cut_header = tmp_path / "cut_header.jpg"  # refused from its header, before any decoder runs
    cut_header.write_bytes(files[1].read_bytes()[:200])
    with pytest.raises(InputError) as err:
        load_images([files[0], cut_header], 64)
    assert str(err.value) == f"{cut_header}: not a readable image (Truncated File Read)"

    truncated = tmp_path / "truncated.jpg"  # a sound header, cut pixel data: TensorFlow's decoder refuses it
    truncated.write_bytes(files[1].read_bytes()[:2000])
    with pytest.raises(InputError) as err:
        load_images([files[0], truncated], 64)
    assert str(err.value).startswith(f"{truncated}: not a decodable image (")

    with pytest.raises(InputError) as err:
        load_images([tmp_path / "missing.jpg"], 64)
    assert str(err.value) == f"{tmp_path / 'missing.jpg'}: file not found"

    link = tmp_path / "link.jpg"  # the rules of every other command: a symlink is refused, not followed
    link.symlink_to(files[0])
    with pytest.raises(InputError) as err:
        load_images([link], 64)
    assert str(err.value) == f"{link}: is a symbolic link, not an image file"


def test_augmentation_is_seeded_mild_and_keeps_headings():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 255, (4, 90, 90, 3), dtype=np.uint8))
    a = augment_batch(images, tf.constant([1, 2], tf.int64), 64, Augment()).numpy()
    b = augment_batch(images, tf.constant([1, 2], tf.int64), 64, Augment()).numpy()
    c = augment_batch(images, tf.constant([1, 3], tf.int64), 64, Augment()).numpy()
    assert a.shape == (4, 64, 64, 3) and 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    plain = augment_batch(images, tf.constant([1, 2], tf.int64), 64, Augment.scaled(0.0)).numpy()
    expected = tf.image.resize(tf.cast(images, tf.float32), (64, 64), antialias=True).numpy()
    np.testing.assert_allclose(plain, np.clip(expected, 0, 255), atol=1e-3)


def test_augmentation_strength_scales_the_mild_default():
    from geoloc.model.train_config import TrainConfig

    def fields(a):
        return pytest.approx((a.min_area, a.max_aspect, a.brightness, a.contrast, a.saturation))

    assert fields(Augment.scaled(1.0)) == (0.64, 1.15, 0.12, 0.2, 0.2)
    # twice as strong: crops down to 1 - 2 x 0.36 of the area, aspect up to 1.15 squared, twice each jitter
    assert fields(Augment.scaled(2.0)) == (0.28, 1.3225, 0.24, 0.4, 0.4)
    assert fields(Augment.scaled(0.0)) == (1.0, 1.0, 0.0, 0.0, 0.0)
    assert TrainConfig().augment == 1.0
    # runs recorded when the option was on or off resume with strength 1 or 0
    assert TrainConfig.from_hyperparams({"augment": True}).augment == 1.0
    assert TrainConfig.from_hyperparams({"augment": False}).augment == 0.0
    for bad in (-0.5, 3.0):
        with pytest.raises(ConfigError, match=rf"^augment must be in \[0, 2\.5\] \(got {bad}\)$"):
            TrainConfig(augment=bad).check()


# ---------------------------------------------------------------- backbones, weights

def test_unknown_backbone_is_an_error_listing_the_choices():
    with pytest.raises(ConfigError) as err:
        build_model("vgg16")
    assert str(err.value) == f"unknown backbone 'vgg16' (choose one of: {CHOICES})"


def test_caffe_preprocess_matches_keras_resnet50():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(CaffePreprocess()(x).numpy(), expected, atol=1e-4)


def test_build_model_embeds_unit_vectors_and_sets_scratch_batchnorm():
    model = build_model("mobilenetv3small", dim=16, input_size=48)
    out = model(np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 3)).astype(np.float32), training=False)
    assert out.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=1), 1.0, atol=1e-5)
    bns = [la for la in model.get_layer("backbone").layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(la.momentum == 0.9 for la in bns)
    frozen = build_model("mobilenetv3small", dim=16, input_size=48, freeze=10)
    assert [la.trainable for la in frozen.get_layer("backbone").layers[:11]] == [False] * 10 + [True]


def _momenta(model) -> set[float]:
    return {la.momentum for la in model.get_layer("backbone").layers if isinstance(la, keras.layers.BatchNormalization)}


def test_batchnorm_momentum_is_0_9_from_scratch_and_0_99_from_pretrained_weights(tmp_path):
    from geoloc.model.train_config import TrainConfig

    scratch = build_model("mobilenetv3small", dim=16, input_size=48, weights="none")
    assert _momenta(scratch) == {0.9}
    start = tmp_path / "start.weights.h5"
    scratch.save_weights(start)
    assert _momenta(build_model("mobilenetv3small", dim=16, input_size=48, weights=str(start))) == {0.99}
    assert _momenta(build_model("mobilenetv3small", dim=16, input_size=48, weights=str(start),
                                bn_momentum=0.95)) == {0.95}
    # what a run records and trains with
    assert TrainConfig(weights="none").bn_momentum == 0.9
    assert TrainConfig(weights=str(start)).bn_momentum == 0.99
    assert TrainConfig(weights="imagenet").bn_momentum == 0.99
    assert TrainConfig(weights="imagenet", bn_momentum=0.9).bn_momentum == 0.9


def test_weights_from_file_and_exact_errors(tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    keras.utils.set_random_seed(1)
    source = build_model("mobilenetv3small", dim=16, input_size=48)
    source.save_weights(tmp_path / "m.weights.h5")
    keras.utils.set_random_seed(2)
    copy = build_model("mobilenetv3small", dim=16, input_size=48, weights=str(tmp_path / "m.weights.h5"))
    np.testing.assert_allclose(copy(x, training=False), source(x, training=False), atol=1e-5)

    # a .keras file holding only a backbone goes into the backbone
    backbone = make_backbone("mobilenetv3small", 48)
    backbone.save(tmp_path / "backbone.keras")
    target = build_model("mobilenetv3small", dim=16, input_size=48)
    assert load_start_weights(target, tmp_path / "backbone.keras") == "backbone"
    np.testing.assert_allclose(target.get_layer("backbone").get_weights()[0], backbone.get_weights()[0])

    with pytest.raises(InputError) as err:
        build_model("mobilenetv3small", weights="/nonexistent")
    assert str(err.value) == "/nonexistent: weights file not found"
    assert "--weights none" in err.value.hint

    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match=rf"^{bad}: not a readable HDF5 weights file \("):
        build_model("mobilenetv3small", dim=16, input_size=48, weights=str(bad))

    other = tmp_path / "other.weights.h5"
    shutil.copy(tmp_path / "m.weights.h5", other)
    with pytest.raises(InputError) as err:
        build_model("mobilenetv3small", dim=8, input_size=48, weights=str(other))
    assert str(err.value) == (f"{other}: its weights fit neither this embedder nor its backbone "
                              "(geoloc_mobilenetv3small, input 48 px, dim 8)")

    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"x")
    with pytest.raises(InputError, match=r"not a \.keras model or \.h5 weights file$"):
        build_model("mobilenetv3small", weights=str(odd))


def test_a_run_recorded_before_batches_were_an_option_resumes_with_random_batches():
    from geoloc.model.train_config import TrainConfig

    assert TrainConfig().batches == "nearby"  # today's default
    assert TrainConfig.from_hyperparams({"dim": 256, "places": 8}).batches == "random"
    assert TrainConfig.from_hyperparams({"batches": "nearby"}).batches == "nearby"


def test_a_run_recorded_before_the_moving_average_resumes_without_one():
    from geoloc.model.train_config import TrainConfig

    assert TrainConfig().ema == 0.998  # today's default
    assert TrainConfig.from_hyperparams({"dim": 512, "places": 8}).ema == 0.0
    assert TrainConfig.from_hyperparams({"ema": 0.998}).ema == 0.998


def test_the_inference_side_tried_after_training_is_five_thirds_for_mobilenetv3small_only():
    from geoloc.model.train_config import TrainConfig

    # 5/3 of the training side, to the nearest multiple of 32: 192 -> 320, 160 -> 267 -> 256, 64 -> 107 -> 96
    assert (TrainConfig().input_size, TrainConfig().embed_size) == (192, 320)
    assert TrainConfig(input_size=160).embed_size == 256
    assert TrainConfig(input_size=64).embed_size == 96
    assert TrainConfig(input_size=192, embed_size=192).embed_size == 192  # --embed-size 192: no other side tried
    for backbone in ("mobilenetv3large", "efficientnetb0", "resnet50"):  # pretrained at 224: embed as trained
        assert TrainConfig(backbone=backbone).embed_size == 224
    # a run recorded before the option embedded at its training side, and resumes so
    assert TrainConfig.from_hyperparams({"input_size": 160}).embed_size == 160
    for name, flag in (("input_size", "input-size"), ("embed_size", "embed-size")):
        with pytest.raises(ConfigError, match=rf"^{flag} 16 is too small \(at least 32 pixels\)$"):
            TrainConfig(**{name: 16}).check()
