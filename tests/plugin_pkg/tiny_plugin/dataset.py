"""A minimal dataset plugin: scikit-learn's 8×8 digits, clean and with seeded noise, as two modalities."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from mgmvae.data import Dataset, PairedData, ParamError


class NoisyDigits(Dataset):
    name = "noisy_digits"  # the source name: `datasets.<any name>.source: noisy_digits`
    modalities = ("clean", "noisy")  # two or more; tables and figures read them in this order
    shapes = {"clean": (1, 28, 28), "noisy": (1, 28, 28)}  # (C, H, W) of each; networks exist for these
    default_params = {"noise": 0.3, "test_every": 5}  # or a Params class; `datasets.<any name>.noise: 0.5`

    def check_params(self) -> None:
        if self.params["noise"] < 0:
            raise ParamError("noise", f"noise must be >= 0, got {self.params['noise']}")

    def build(self, name, seed, data_dir, download) -> PairedData:
        digits = load_digits()  # arrays in memory; a loader would read its files under data_dir
        x = np.pad(np.kron(digits.images / 16, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))  # 8×8 -> 28×28
        clean = torch.from_numpy(x).float().unsqueeze(1)
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))  # seeded: same seed, same data
        views = {"clean": clean, "noisy": (clean + self.params["noise"] * noise).clamp(0, 1)}
        test = torch.arange(len(x)) % self.params["test_every"] == 0  # a fixed split by source image
        split = {"train": ~test, "test": test}
        images = {m: {s: v[i].mul(255).round().to(torch.uint8) for s, i in split.items()} for m, v in views.items()}
        labels = {m: {s: torch.from_numpy(digits.target)[i] for s, i in split.items()} for m in views}
        pairs = {s: torch.arange(int(i.sum())).unsqueeze(1).repeat(1, 2) for s, i in split.items()}  # tuple k: image k
        return PairedData(name, list(self.modalities), images, labels, pairs, {"source": self.name, **self.params})
