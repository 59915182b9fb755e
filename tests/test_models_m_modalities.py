"""The models with M > 2 modalities: each objective against a hand computation on three modalities
(the draws reproduced by seeding, in the model's order), MVAE's random subsets against the
reference's sampling scheme, the refusal of a model defined for two modalities only, and a few
training steps of every model on three and five modalities."""

from __future__ import annotations

import math
from collections import Counter
from functools import partial
from itertools import combinations, permutations

import pytest
import torch

from baselines.mvae import random_subsets
from mgmvae.contracts.model import SHAPE_SETS, _check_refusal, check_model, limitations
from mgmvae.contrastive import info_nce
from mgmvae.data.paired import PairedData
from mgmvae.model import select_negatives, triplet_loss
from mgmvae.registry import build_model, builtin_model_names, resolve
from mgmvae.train import train_model
from tests.conftest import THREE, TOY_SETTINGS, gauss_lp, kl_std, laplace_ll, make_batch, make_model, template_code

B, D, P = 4, 3, 2
make = partial(make_model, shapes=THREE, shared_dim=D, private_dim=P)
batch = partial(make_batch, THREE, n=B)


def poe(heads, names, prior=True):
    """Closed-form product of the Gaussian experts of ``names`` (and N(0, I)): (mean, log-variance)."""
    precision = sum((-heads[m].shared_scale).exp() for m in names) + (1.0 if prior else 0.0)
    mean = sum(heads[m].shared_loc * (-heads[m].shared_scale).exp() for m in names) / precision
    return mean, -precision.log()


def draw(mu, logvar, *lead):
    return mu + (0.5 * logvar).exp() * torch.randn(*lead, *mu.shape)


# ======================================================================== MVAE
def test_random_subsets_follow_the_references_scheme():
    # size uniform among 2 … M − 1, then a subset of that size uniformly
    torch.manual_seed(0)
    names = ["m0", "m1", "m2", "m3", "m4"]
    drawn = [tuple(random_subsets(names, 1)[0]) for _ in range(6000)]
    sizes = Counter(len(s) for s in drawn)
    assert set(sizes) == {2, 3, 4} and all(abs(n - 2000) < 180 for n in sizes.values()), sizes
    fours = Counter(s for s in drawn if len(s) == 4)
    assert len(fours) == 5 and all(abs(n - 400) < 90 for n in fours.values()), fours  # C(5, 4) = 5
    # several of one size are distinct, and all of them when more are asked than there are
    assert sorted(map(tuple, random_subsets(["a", "b", "c"], 3))) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert len(random_subsets(["a", "b", "c"], 5)) == 3
    # two modalities: no such subset, and no random draw
    state = torch.get_rng_state()
    assert random_subsets(["a", "b"], 4) == [] and torch.equal(torch.get_rng_state(), state)


def test_mvae_three_modalities_by_hand():
    """Joint + 3 unimodal + 1 random pair ELBO, KL weight 1 (no annealing)."""
    model = make("mvae", {"annealing_epochs": 0, "random_subsets": 1})
    x = batch()
    torch.manual_seed(5)
    terms = model.loss(x)
    with torch.no_grad():
        torch.manual_seed(5)
        heads = {m: model.encoders[m](x[m]) for m in THREE}

        def elbo(names):
            mu, lv = poe(heads, names)
            z = draw(mu, lv)
            return (sum(laplace_ll(model, m, x[m], z) for m in names) - kl_std(mu, lv)).mean()

        total = elbo(list(THREE)) + sum(elbo([m]) for m in THREE)
        torch.randint(1, (1,))  # the size: only 2 exists for M = 3
        pair = list(combinations(THREE, 2))[int(torch.randperm(3)[0])]
        subset = elbo(list(pair))
    assert torch.allclose(-terms["loss"], total + subset, rtol=1e-5)
    assert torch.allclose(terms["subsets/elbo"], subset, rtol=1e-5)


# ======================================================================== MMVAE, MMVAE+
def test_mmvae_three_modalities_by_hand():
    """(1/3) Σ_m [Σ_d w_d log p(x_d|z_m) + log p(z_m) − log (1/3) Σ_j q_j(z_m)], z_m ~ q_m."""
    model = make("mmvae", {"objective": "elbo", "learn_prior": False})
    x = batch()
    torch.manual_seed(7)
    loss = model.loss(x)["loss"]
    with torch.no_grad():
        torch.manual_seed(7)
        h = {m: model.encoders[m](x[m]) for m in THREE}
        z = {m: draw(h[m].shared_loc, h[m].shared_scale, 1) for m in THREE}
        zero = torch.zeros(D)
        total = 0.0
        for m in THREE:
            recon = sum(laplace_ll(model, d, x[d], z[m]) for d in THREE)
            lq = torch.logsumexp(torch.stack([gauss_lp(z[m], h[j].shared_loc, h[j].shared_scale) for j in THREE]), 0)
            total = total + (recon + gauss_lp(z[m], zero, zero) - (lq - math.log(3))).mean() / 3
    assert torch.allclose(-loss, total, rtol=1e-5)


def test_mmvae_plus_three_modalities_by_hand():
    """Every stratum decodes every target: its own w for itself, a draw of r_d for each other d."""
    model = make("mmvae_plus", {"beta": 2.5, "prior_scale": "unit"})  # N(0, I) priors, r_d = N(0, exp ρ_d)
    with torch.no_grad():
        for i, m in enumerate(THREE):
            model.aux_logvar[m].copy_(torch.tensor([0.3 * i, -0.5]))
    x = batch()
    torch.manual_seed(9)
    loss = model.loss(x)["loss"]
    with torch.no_grad():
        torch.manual_seed(9)
        h = {m: model.encoders[m](x[m]) for m in THREE}
        z = {m: draw(h[m].shared_loc, h[m].shared_scale, 1) for m in THREE}
        w = {m: draw(h[m].private_loc, h[m].private_scale, 1) for m in THREE}
        aux = {(d, m): (0.5 * model.aux_logvar[d]).exp() * torch.randn(1, B, P) for d in THREE for m in THREE if m != d}
        zero = torch.zeros(1)
        total = 0.0
        for m in THREE:
            recon = sum(laplace_ll(model, d, x[d], torch.cat([z[m], w[m] if d == m else aux[d, m]], -1)) for d in THREE)
            lq = torch.logsumexp(torch.stack([gauss_lp(z[m], h[j].shared_loc, h[j].shared_scale) for j in THREE]), 0)
            ratio = (
                gauss_lp(z[m], zero, zero)
                + gauss_lp(w[m], zero, zero)
                - (lq - math.log(3))
                - gauss_lp(w[m], h[m].private_loc, h[m].private_scale)
            )
            total = total + (recon + 2.5 * ratio).mean() / 3
    assert torch.allclose(-loss, total, rtol=1e-5)


def test_idmvae_cross_mi_over_ordered_pairs_divided_by_m_minus_1():
    model = make("idmvae", {"temperature": 0.3})
    with torch.no_grad():
        encoded = model.encode(batch())
        centred = {m: q.mu - q.mu.mean(0) for m, (q, _) in encoded.items()}
        hand = sum(info_nce(centred[i], centred[j], 0.3) for i, j in permutations(THREE, 2)) / 2
        assert torch.allclose(model.cross_mi_loss(encoded), hand)


# ======================================================================== MoPoE, MWB-VAE
def test_mopoe_three_modalities_by_hand():
    """Seven subsets, the N(0, I) expert in the full set's product only; stratified ELBO."""
    model = make("mopoe", {"beta": 2.5})
    x = batch()
    torch.manual_seed(11)
    loss = model.loss(x)["loss"]
    subsets = [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"]]
    with torch.no_grad():
        torch.manual_seed(11)
        h = {m: model.encoders[m](x[m]) for m in THREE}
        total = 0.0
        for s in subsets:
            mu, lv = poe(h, s, prior=len(s) == 3)
            z = draw(mu, lv)
            total = total + (sum(laplace_ll(model, m, x[m], z) for m in THREE) - 2.5 * kl_std(mu, lv)).mean() / 7
    assert torch.allclose(-loss, total, rtol=1e-5)


def test_mwbvae_three_modality_barycenter():
    model = make("mwbvae", {"weights": {"a": 1.0, "b": 2.0, "c": 1.0}})
    x = batch()
    with torch.no_grad():
        q = {m: model.encoders[m](x[m]) for m in THREE}
        std = {m: (0.5 * q[m].shared_scale).exp() for m in THREE}
        got = model.joint_posterior(model.encode(x))
        mu = (q["a"].shared_loc + 2 * q["b"].shared_loc + q["c"].shared_loc) / 4
        assert torch.allclose(got.mu, mu, atol=1e-6)
        assert torch.allclose(got.std, (std["a"] + 2 * std["b"] + std["c"]) / 4, atol=1e-6)
        assert len(model.subset_mixture(model.encode(x))[1].experts) == 7


# ======================================================================== DMVAE
def test_dmvae_three_modalities_by_hand():
    """Per modality: self, one cross term from each other modality (summed), the PoE of all three."""
    model = make("dmvae", {"poe_reconstruction": True})
    x = batch()
    torch.manual_seed(9)
    terms = model.loss(x)
    with torch.no_grad():
        torch.manual_seed(9)
        h = {m: model.encoders[m](x[m]) for m in THREE}
        shared = {m: (h[m].shared_loc, h[m].shared_scale) for m in THREE} | {"poe": poe(h, list(THREE))}
        z = {s: draw(*q) for s, q in shared.items()}
        total, names = 0.0, set()
        for m in THREE:
            w = draw(h[m].private_loc, h[m].private_scale)
            for term, s in [("self", m)] + [(f"cross_{n}", n) for n in THREE if n != m] + [("poe", "poe")]:
                recon = laplace_ll(model, m, x[m], torch.cat([z[s], w], -1))
                total = total + (recon - kl_std(*shared[s]) - kl_std(h[m].private_loc, h[m].private_scale)).mean()
                names.add(f"{m}/{term}/recon")
    assert torch.allclose(-terms["loss"], total, rtol=1e-5)
    assert names == {k for k in terms if k.endswith("/recon")} and len(names) == 3 * 4


# ======================================================================== MGMVAE
def ordered_pair_triplets(means, seed=3):
    """Σ over ordered pairs (i, j) of the batch-mean L_triplet(μ_i, μ_j, negatives in μ_j), α = 1.7,
    the negatives drawn as ``alignment`` draws them (seeded)."""
    torch.manual_seed(seed)
    total = 0.0
    for i, j in permutations(range(len(means)), 2):
        index, _ = select_negatives(means[i], means[j], 1, False)
        total = total + triplet_loss(means[i], means[j], means[j][index], 1.7).mean().item()
    return total


def test_mgmvae_alignment_normalisers_are_eq12_at_two_and_part_at_five():
    """Eq. 12 at M = 2, L(x, y, y') + L(y, x, x'), under both normalisers; at M = 5 ``modalities``
    divides the 20 ordered-pair terms by M − 1 = 4, ``pairs`` by M(M − 1)/2 = 10: 2/M = 0.4 of it."""
    means = {
        m: [torch.randn(6, 4, generator=torch.Generator().manual_seed(10 * m + i)) for i in range(m)] for m in (2, 5)
    }
    got = {}
    for normaliser in ("modalities", "pairs"):
        params = {"negatives": 1, "margin": 1.7, "semi_hard_from_epoch": 1000, "align_normaliser": normaliser}
        model = make("mgmvae", params)
        for m in (2, 5):
            torch.manual_seed(3)
            got[normaliser, m] = model.alignment(*means[m])[0].item()
    x, y = means[2]
    torch.manual_seed(3)
    x_neg, _ = select_negatives(x, y, 1, False)
    y_neg, _ = select_negatives(y, x, 1, False)
    eq12 = triplet_loss(x, y, y[x_neg], 1.7).mean() + triplet_loss(y, x, x[y_neg], 1.7).mean()
    assert got["modalities", 2] == got["pairs", 2] == pytest.approx(eq12.item())
    five = ordered_pair_triplets(means[5])
    assert got["modalities", 5] == pytest.approx(five / 4) and got["pairs", 5] == pytest.approx(five / 10)
    assert got["pairs", 5] == pytest.approx(0.4 * got["modalities", 5])
    with pytest.raises(ValueError, match="align_normaliser"):
        make("mgmvae", {"align_normaliser": "anchors"})


def test_mgmvae_cross_reconstruction_averages_the_other_sources():
    """Σ_m [log p(m | z_m, h_m) + ½ Σ_{o≠m} log p(m | z_o, h ~ N(0, I))], z_o from o's expert with N(0, I)."""
    model = make("mgmvae", {"mixture_init": "random"})
    x = batch()
    with torch.no_grad():
        encoded = model.encode(x)
        h = {m: encoded[m][1].mu for m in THREE}
        torch.manual_seed(4)
        got = model.cross_reconstruction(x, encoded, h)
        torch.manual_seed(4)
        heads = {m: model.encoders[m](x[m]) for m in THREE}
        hand = 0.0
        for m in THREE:
            for o in THREE:
                z = draw(*poe(heads, [o]))
                style = h[m] if o == m else torch.randn(B, P)
                ll = 0.1 * laplace_ll(model, m, x[m], torch.cat([z, style], -1))  # recon_scale 0.1
                hand = hand + (ll if o == m else ll / 2)
    assert torch.allclose(got, hand, rtol=1e-5)


def test_mgmvae_three_modality_loss_is_eq13_with_every_modality():
    model = make("mgmvae", {"mixture_init": "random", "tau": 0.0})
    x = batch(n=8)
    torch.manual_seed(1)
    t = model.loss(x)
    p = model.params
    elbo = (
        t["recon_a"]
        + t["recon_b"]
        + t["recon_c"]
        - p["lambda1"] * t["kl_mixture"]
        - p["lambda2"] * t["kl_private"]
        - p["lambda3"] * t["kl_unimodal_shared"]
        + t["recon_cross"]
    )
    assert t["elbo"].item() == pytest.approx(elbo.item(), rel=1e-5)
    assert t["align"].item() > 0 and t["confident_fraction"].item() == 1.0
    assert t["loss"].item() == pytest.approx((-t["elbo"] + t["center"] + t["align"]).item(), rel=1e-5)
    with torch.no_grad():  # the center loss: Σ over the three modalities' means
        means = [q.mu for q, _ in model.encode(x).values()]
        torch.manual_seed(1)
        z = model.joint_posterior(model.encode(x)).rsample()
        label = model.mixture.responsibilities(z).argmax(-1)
        hand = sum((mu - model.centers[label]).pow(2).sum(-1) for mu in means).mean()
    assert t["center"].item() == pytest.approx(hand.item(), rel=1e-5)


# ======================================================================== refusing M > 2
def two_only(tmp_path) -> str:
    """The guide's template with ``max_modalities = 2``, as a file."""
    code = template_code("two_only").replace("    def loss(", "    max_modalities = 2\n\n    def loss(", 1)
    (tmp_path / "two_only.py").write_text(code)
    return f"{tmp_path / 'two_only.py'}:TinyVAE"


def test_a_model_for_two_modalities_refuses_more_clearly():
    cls = resolve("mvae").cls
    settings = {**TOY_SETTINGS, "params": {}}

    class TwoOnly(cls):  # type: ignore[misc, valid-type]
        max_modalities = 2

    assert TwoOnly({"a": THREE["a"], "b": THREE["b"]}, settings).modalities == ["a", "b"]
    with pytest.raises(ValueError, match=r"'mvae' is defined for at most 2 modalities .* has 3: \['a', 'b', 'c'\]"):
        TwoOnly(THREE, settings)


def test_check_model_states_the_limitation_instead_of_failing(tmp_path, capsys):
    from mgmvae.cli import main
    from mgmvae.config import load_config

    entry = two_only(tmp_path)
    ref = resolve(entry)
    assert check_model(ref, load_config()) == []
    assert limitations(ref.cls) == [
        "[three_modalities shapes]: refused, as stated: defined for at most 2 modalities, this set has 3"
    ]
    assert main(["check-model", entry, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "two_only: [three_modalities shapes]: refused, as stated" in out and "keeps the model contract" in out
    assert limitations(resolve("mvae").cls) == []


def test_a_model_that_does_not_refuse_as_stated_fails_the_contract():
    config_settings = {**TOY_SETTINGS, "params": {}}
    _, shapes = SHAPE_SETS["three_modalities"]
    cls = resolve("mvae").cls
    failures = _check_refusal(cls, shapes, config_settings, "[three_modalities shapes]")  # max_modalities None
    assert [(f.method, f.got) for f in failures] == [("__init__ [three_modalities shapes]", "a model")]


def test_a_model_assuming_two_modalities_fails_the_three_modality_set(tmp_path):
    from mgmvae.config import load_config

    code = template_code("pair_only").replace(
        "        encoded = self.encode(batch)",
        "        first, second = self.modalities\n        encoded = self.encode(batch)",
    )
    (tmp_path / "pair_only.py").write_text(code)
    failures = check_model(resolve(f"{tmp_path / 'pair_only.py'}:TinyVAE"), load_config())
    assert [f.method for f in failures] == ["loss [three_modalities shapes]"]
    assert "ValueError: too many values to unpack" in failures[0].got


# ======================================================================== training
def synthetic(shapes: dict, n: int = 16, seed: int = 0) -> PairedData:
    """Class-coded images (a bright band whose position is the class), one per modality shape."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = {}
    for i, (m, (c, h, w)) in enumerate(shapes.items()):
        x = torch.randint(0, 30, (n, c, h, w), generator=g, dtype=torch.uint8)
        for k in range(10):
            row = (2 * k + i) % (h - 2)
            x[labels == k, :, row : row + 3, :] = 255
        images[m] = {"train": x, "test": x.clone()}
    pairs = {s: torch.arange(n).unsqueeze(1).repeat(1, len(shapes)) for s in ("train", "test")}
    return PairedData("toy_m", list(shapes), images, {m: {"train": labels, "test": labels} for m in shapes}, pairs)


FIVE = {f"m{i}": (1, 28, 28) for i in range(5)}  # PolyMNIST's count; MLP shapes keep the test fast
TRAIN_PARAMS = {"mmvae": {"k": 2}, "mgmvae": {"n_components": 4, "mixture_init_epoch": 2, "semi_hard_from_epoch": 3}}


@pytest.mark.parametrize("shapes", [THREE, FIVE], ids=["M3", "M5"])
@pytest.mark.parametrize("name", builtin_model_names())
def test_every_model_trains_on_m_modalities(name, shapes):
    """Six steps on one batch of 8: every epoch's loss terms finite, the loss falling."""
    data = synthetic(shapes, n=8)
    settings = {**TOY_SETTINGS, "epochs": 6, "batch_size": 8, "params": TRAIN_PARAMS.get(name, {})}
    torch.manual_seed(0)
    model = build_model(name, data.shapes, settings)
    history = train_model(model, data, settings, seed=0, progress=False)
    assert all(math.isfinite(v) for epoch in history for v in epoch.values())
    losses = [epoch["loss"] for epoch in history]
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    model.eval()
    test = data.batch("test", torch.arange(4))
    names = list(shapes)
    out = model.generate({m: test[m] for m in names[:-1]}, names[:-1], names[-1])
    assert out.shape == (4, *shapes[names[-1]]) and torch.isfinite(out).all()
