"""Pairing rule, CDCB formulas, the embedded digits datasets and the build_dataset spec checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mgmvae.data import DataError
from mgmvae.data.cdcb import colour_digits, make_cdcb
from mgmvae.data.embedded import hand_digits, hand_split
from mgmvae.data.pairing import class_counts, class_matched_pairs
from mgmvae.registry import DATASETS, builtins
from mgmvae.study_datasets import build_dataset


# ------------------------------------------------------------------------------ pairing
def test_pairing_matches_hand_computation():
    a = torch.tensor([0, 1, 0, 2, 1, 0])  # class 0 at 0,2,5; class 1 at 1,4; class 2 at 3
    b = torch.tensor([1, 0, 0, 1, 1, 2, 2])  # class 0 at 1,2; class 1 at 0,3,4; class 2 at 5,6
    assert class_counts(a, b, max_per_class=10) == {0: 2, 1: 2, 2: 1}
    # n_c takes the FIRST indices: A keeps {0,2},{1,4},{3}; B keeps {1,2},{0,3},{5}.
    first = {0: ({0, 2}, {1, 2}), 1: ({1, 4}, {0, 3}), 2: ({3}, {5})}
    pairs = class_matched_pairs(a, b, pairings=3, max_per_class=10, seed=0)
    assert pairs.dtype == torch.int64 and pairs.shape == (3 * 5, 2)
    assert torch.equal(a[pairs[:, 0]], b[pairs[:, 1]])
    for c, (keep_a, keep_b) in first.items():
        rows = pairs[a[pairs[:, 0]] == c]
        for block in rows.split(len(keep_a)):  # each pairing is a permutation of the kept lists
            assert sorted(block[:, 0].tolist()) == sorted(keep_a)
            assert sorted(block[:, 1].tolist()) == sorted(keep_b)
    capped = class_matched_pairs(a, b, pairings=2, max_per_class=1, seed=0)
    assert sorted(map(tuple, capped.tolist())) == [(0, 1), (0, 1), (1, 0), (1, 0), (3, 5), (3, 5)]


def test_pairing_is_seeded():
    a, b = torch.arange(200) % 10, torch.arange(300) % 10
    p0 = class_matched_pairs(a, b, 5, seed=0)
    assert torch.equal(p0, class_matched_pairs(a, b, 5, seed=0))
    assert not torch.equal(p0, class_matched_pairs(a, b, 5, seed=1))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=40),
    st.lists(st.integers(0, 4), min_size=1, max_size=40),
    st.integers(1, 4),
    st.integers(1, 6),
)
def test_pairing_properties(la, lb, pairings, cap):
    a, b = torch.tensor(la), torch.tensor(lb)
    counts = class_counts(a, b, cap)
    if sum(counts.values()) == 0:
        with pytest.raises(ValueError):
            class_matched_pairs(a, b, pairings, cap)
        return
    pairs = class_matched_pairs(a, b, pairings, cap, seed=3)
    assert len(pairs) == pairings * sum(counts.values())
    assert torch.equal(a[pairs[:, 0]], b[pairs[:, 1]])
    for c, n in counts.items():  # every kept index appears exactly `pairings` times
        side_a = pairs[a[pairs[:, 0]] == c, 0]
        assert torch.equal(
            torch.bincount(side_a, minlength=len(a))[torch.nonzero(a == c).flatten()[:n]], torch.full((n,), pairings)
        )


# -------------------------------------------------------------------------------- CDCB
def test_cdcb_formulas_on_hand_made_pixels():
    gray = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    colour = torch.tensor([[0.2, 0.4, 1.0]]).repeat(3, 1)
    cd, cb = colour_digits(gray, colour, colour)
    # CD = x·c; CB = (1−x)·c + x, in 0..255 with x = gray/255.
    assert cd[:, :, 0, 0].tolist() == [[0, 0, 0], [26, 51, 128], [51, 102, 255]]
    assert cb[:, :, 0, 0].tolist() == [[51, 102, 255], [153, 179, 255], [255, 255, 255]]


def test_make_cdcb_pads_repeats_and_draws_independent_colours():
    gray = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    gray[:, :, 10:18, 10:18] = 255
    cd, cb, source = make_cdcb(gray, colourings=3, seed=0, size=32)
    assert cd.shape == cb.shape == (12, 3, 32, 32) and cd.dtype == torch.uint8
    assert torch.bincount(source).tolist() == [3, 3, 3, 3]
    # Padded by 2: CD is black outside the digit, CB's digit (now at 12:20) is white.
    assert (cd[:, :, 0, 0] == 0).all() and (cb[:, :, 12:20, 12:20] == 255).all()
    cd_colour, cb_colour = cd[:, :, 16, 16], cb[:, :, 0, 0]  # digit colour of CD, background of CB
    assert not torch.equal(cd_colour, cb_colour) and len(torch.unique(cb_colour, dim=0)) == 12
    assert torch.equal(make_cdcb(gray, 3, seed=0)[1], cb)


# ------------------------------------------------------------------- embedded datasets
def test_hand_digits_and_split():
    images, labels = hand_digits()
    assert images.shape == (1797, 1, 28, 28) and images.dtype == torch.uint8
    assert images[:, :, :4].max() == 0 and images[:, :, 24:].max() == 0  # MNIST-like 20×20 in 28×28
    split = hand_split(labels)
    assert (len(split["train"]), len(split["test"])) == (1437, 360)
    assert not set(split["train"].tolist()) & set(split["test"].tolist())
    per_class = torch.bincount(labels[split["test"]], minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # stratified


@pytest.fixture(scope="module")
def street():
    spec = {"source": "digits_street", "pairings": 2, "street_per_class_train": 4, "street_per_class_test": 2}
    return spec, build_dataset("ds", spec, "unused", False, seed=5)


def test_digits_street_shapes_balance_and_pairs(street):
    _, data = street
    assert data.modalities == ["hand", "street"]
    assert data.shapes == {"hand": (1, 28, 28), "street": (3, 32, 32)}
    assert len(data.images["street"]["train"]) == 40 and len(data.images["street"]["test"]) == 20
    for split, per_class in (("train", 4), ("test", 2)):
        assert torch.bincount(data.labels["street"][split]).tolist() == [per_class] * 10
        assert data.num_pairs(split) == 2 * 10 * per_class  # n_c = min(#hand_c, per_class)
        rows = data.pairs[split]
        assert torch.equal(data.labels["hand"][split][rows[:, 0]], data.labels["street"][split][rows[:, 1]])
    train, test = data.images["street"]["train"], data.images["street"]["test"]
    assert not (train.flatten(1)[:, None] == test.flatten(1)[None]).all(-1).any()  # independent draws
    assert data.meta["street_per_class_train"] == 4


def test_digits_street_is_deterministic(street):
    spec, data = street
    same = build_dataset("ds", spec, "unused", False, seed=5)
    other = build_dataset("ds", spec, "unused", False, seed=6)
    for split in ("train", "test"):
        assert torch.equal(same.images["street"][split], data.images["street"][split])
        assert torch.equal(same.pairs[split], data.pairs[split])
    assert not torch.equal(other.images["street"]["train"], data.images["street"]["train"])


def test_digits_street_colour_scheme_is_mostly_light_on_dark(street):
    _, data = street
    img = data.images["street"]["train"].float()
    centre, border = img[:, :, 12:20, 14:18].mean((1, 2, 3)), img[:, :, :, :3].mean((1, 2, 3))
    assert (centre > border).float().mean() > 0.6  # §6: about 80% light text on darker background


def test_digits_cdcb_split_by_source_image():
    data = build_dataset("dc", {"source": "digits_cdcb", "colourings": 2}, "unused", False, seed=0)
    assert data.modalities == ["cd", "cb"] and data.shapes == {"cd": (3, 32, 32), "cb": (3, 32, 32)}
    assert (data.num_pairs("train"), data.num_pairs("test")) == (2 * 1437, 2 * 360)
    assert torch.equal(data.pairs["test"], torch.arange(720).unsqueeze(1).repeat(1, 2))
    hand, labels = hand_digits()
    split = hand_split(labels)
    for s in ("train", "test"):
        source = split[s].repeat(2)  # colouring-major: image k comes from split[s][k % N]
        assert torch.equal(data.labels["cd"][s], labels[source])
        ink = torch.nn.functional.pad(hand[source], (2, 2, 2, 2)) > 0
        assert not ((data.images["cd"][s] > 0) & ~ink).any()  # CD ink only where the source digit has ink
    same = build_dataset("dc", {"source": "digits_cdcb", "colourings": 2}, "unused", False, seed=0)
    assert torch.equal(same.images["cb"]["train"], data.images["cb"]["train"])


# -------------------------------------------------------------------------------- spec
def test_spec_errors_name_the_problem():
    expected = {"mnist_svhn", "mnist_cdcb", "digits_street", "digits_cdcb", "digits_poly", "polymnist"}
    assert set(builtins(DATASETS)) == expected
    with pytest.raises(DataError, match="'digits_street'") as info:
        build_dataset("x", {"source": "nope"}, "data", False, 0)
    assert "mnist_svhn" in str(info.value)
    with pytest.raises(DataError, match="'colorings'"):
        build_dataset("x", {"source": "digits_cdcb", "colorings": 2}, "data", False, 0)
    with pytest.raises(DataError, match="colourings = 0: input should be greater than 0"):
        build_dataset("x", {"source": "digits_cdcb", "colourings": 0}, "data", False, 0)
