"""Linear probe on the shared latent (Table 2: "a single-layer neural network" 20 → 10 on the joint
latent of training pairs, tested on test latents). ``evaluation.probe`` (docs/evaluation.md):

- ``logistic_cv``: multinomial logistic regression (lbfgs) on standardised latents, C chosen from
  ``probe_c_grid`` by seeded, stratified ``probe_folds``-fold cross-validation on the training latents
  only (``GridSearchCV``; the scaler refitted in every fold), then refitted on all of them.
- ``linear_sgd``: the paper's probe as MMVAE trains it (iffsid/mmvae, src/report/analyse_ms.py
  ``classify_latents``: ``Latent_Classifier``, cross-entropy, Adam) on raw latents, seeded.
The probe per subset S (MoPoE, eval_metrics/representation.py ``train_clf_lr_all_subsets``): fitted on
the training pairs' S-embeddings by ``fit_like``, of Table 2's kind (``logistic_cv`` at its chosen C).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

PROBES = ("logistic_cv", "linear_sgd")


@dataclass
class FittedProbe:
    predict: Callable[[np.ndarray], np.ndarray]
    selection: dict[str, Any] = field(default_factory=dict)  # what was chosen and how (recorded)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _labels(y: Tensor) -> np.ndarray:
    return y.detach().cpu().numpy()


def fit_logistic_cv(
    z: np.ndarray, y: np.ndarray, seed: int, c_grid: list[float], folds: int, max_iter: int = 1000
) -> FittedProbe:
    """Logistic regression with C chosen by stratified k-fold CV on (z, y) alone."""
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min())
    if smallest < folds:
        raise ValueError(
            f"the probe's {folds}-fold cross-validation needs at least {folds} training latents of every "
            f"class; the rarest class has {smallest}. Lower evaluation.probe_folds or raise probe_max_train."
        )
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(pipe, {"logisticregression__C": list(c_grid)}, cv=cv, scoring="accuracy", refit=True)
    search.fit(z, y)
    selection = {
        "method": "logistic_cv",
        "C": float(search.best_params_["logisticregression__C"]),
        "cv_accuracy": float(search.best_score_),
        "folds": folds,
    }
    return FittedProbe(search.best_estimator_.predict, selection)


def fit_linear_sgd(z: np.ndarray, y: np.ndarray, seed: int, epochs: int, lr: float, batch_size: int) -> FittedProbe:
    """One linear layer trained by Adam on cross-entropy; seeded initialisation and batch order."""
    generator = torch.Generator().manual_seed(seed)
    x, t = torch.from_numpy(z).float(), torch.from_numpy(y).long()
    layer = nn.Linear(x.shape[1], int(t.max()) + 1)
    with torch.no_grad():  # nn.Linear's default init, from the seeded generator
        bound = 1.0 / x.shape[1] ** 0.5
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    optimiser = torch.optim.Adam(layer.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(batch_size):
                optimiser.zero_grad()
                nn.functional.cross_entropy(layer(x[idx]), t[idx]).backward()
                optimiser.step()

    def predict(q: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return layer(torch.from_numpy(q).float()).argmax(1).numpy()

    return FittedProbe(predict, {"method": "linear_sgd", "epochs": epochs, "lr": lr, "batch_size": batch_size})


def fit_linear_probe(train_z: Tensor, train_y: Tensor, seed: int, settings: Mapping[str, Any]) -> FittedProbe:
    """The probe of ``settings["probe"]`` fitted on training latents only (``settings``: the config's
    ``evaluation`` section, which holds the ``probe*`` keys)."""
    if len(train_z) != len(train_y):
        raise ValueError("train_z and train_y differ in length")
    z, y = _numpy(train_z), _labels(train_y)
    if settings["probe"] == "logistic_cv":
        return fit_logistic_cv(z, y, seed, list(settings["probe_c_grid"]), int(settings["probe_folds"]))
    if settings["probe"] == "linear_sgd":
        return fit_linear_sgd(
            z, y, seed, int(settings["probe_epochs"]), float(settings["probe_lr"]), int(settings["probe_batch_size"])
        )
    raise ValueError(f"config key 'evaluation.probe': {settings['probe']!r} is not one of {PROBES}")


def fit_like(selection: Mapping[str, Any], z: Tensor, y: Tensor, seed: int, settings: Mapping[str, Any]) -> FittedProbe:
    """A probe of ``selection``'s kind (a fitted probe's ``selection``) on other latents: logistic
    regression at its chosen C on standardised latents, or the linear layer with ``settings``."""
    if len(z) != len(y):
        raise ValueError("z and y differ in length")
    if selection["method"] == "linear_sgd":
        return fit_linear_probe(z, y, seed, settings)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=selection["C"], max_iter=1000, random_state=seed))
    pipe.fit(_numpy(z), _labels(y))
    return FittedProbe(pipe.predict, {"method": "logistic", "C": float(selection["C"])})


def probe_accuracy(probe: FittedProbe, test_sets: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    return {name: float((probe.predict(_numpy(z)) == _labels(y)).mean()) for name, (z, y) in test_sets.items()}


def linear_probe(
    train_z: Tensor,
    train_y: Tensor,
    test_sets: dict[str, tuple[Tensor, Tensor]],
    seed: int,
    settings: Mapping[str, Any],
) -> dict[str, float]:
    """Fit the probe on ``train_z`` and return its accuracy on each named test set.

    At most ``settings["probe_max_train"]`` training latents are used (a seeded subsample), which
    keeps the fit to seconds on million-pair training sets.
    """
    max_train = int(settings["probe_max_train"])
    if len(train_z) > max_train:
        keep = torch.randperm(len(train_z), generator=torch.Generator().manual_seed(seed))[:max_train]
        train_z, train_y = train_z[keep.to(train_z.device)], train_y[keep.to(train_y.device)]
    return probe_accuracy(fit_linear_probe(train_z, train_y, seed, settings), test_sets)
