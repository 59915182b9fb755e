"""MultiVae side by side: its MVAE / MMVAE trained by its own trainer, on our networks and data, under
the separate benchmark virtualenv (``make bench-env``), as ``python -m mgmvae.bench`` calls it:

    .venv-bench/bin/python bench/multivae_side.py --model mmvae --k 10 --pairs 20000 --out mv.json

MultiVae (PyPI ``multivae``, Apache-2.0) is used as installed; nothing of it is copied here.
docs/speed.md ("MultiVae") lists what is matched to our side and what is timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # mgmvae.nets, mgmvae.compat and mgmvae.bench.measure need only torch

import torch  # noqa: E402

from mgmvae.bench.measure import SHAPES, synthetic_arrays  # noqa: E402
from mgmvae.compat import import_torchvision  # noqa: E402
from mgmvae.nets import Decoder, Encoder  # noqa: E402

import_torchvision()  # MultiVae's trainer imports torchvision; same CPU-wheel workaround as ours

from multivae.data.datasets.base import MultimodalBaseDataset  # noqa: E402
from multivae.models import MMVAE, MVAE, MMVAEConfig, MVAEConfig  # noqa: E402
from multivae.models.nn.base_architectures import BaseDecoder, BaseEncoder  # noqa: E402
from multivae.trainers import BaseTrainer, BaseTrainerConfig  # noqa: E402
from multivae.trainers.base.callbacks import TrainingCallback  # noqa: E402
from pythae.models.base.base_utils import ModelOutput  # noqa: E402

LATENT = 20


class OurEncoder(BaseEncoder):
    """mgmvae.nets.Encoder (shared latent only) in MultiVae's encoder interface."""

    def __init__(self, shape, latent_dim: int):
        BaseEncoder.__init__(self)
        self.latent_dim = latent_dim
        self.net = Encoder(shape, latent_dim, 0)

    def forward(self, x):
        out = self.net(x)
        return ModelOutput(embedding=out.shared_loc, log_covariance=out.shared_scale)


class OurDecoder(BaseDecoder):
    """mgmvae.nets.Decoder in MultiVae's decoder interface (returns the mean image)."""

    def __init__(self, shape, latent_dim: int):
        BaseDecoder.__init__(self)
        self.net = Decoder(shape, latent_dim)

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))


class EpochTimer(TrainingCallback):
    def __init__(self):
        self.starts, self.ends = [], []

    def on_train_step_begin(self, training_config, **kwargs):
        self._sync()
        self.starts.append(time.perf_counter())

    def on_epoch_end(self, training_config, **kwargs):
        self._sync()
        self.ends.append(time.perf_counter())

    @staticmethod
    def _sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()


def build(model: str, k: int):
    weights = {m: math.prod(SHAPES["svhn"]) / math.prod(s) for m, s in SHAPES.items()}
    common = dict(
        n_modalities=2,
        latent_dim=LATENT,
        input_dims={m: tuple(s) for m, s in SHAPES.items()},
        uses_likelihood_rescaling=True,
        rescale_factors=weights,
        decoders_dist={m: "laplace" for m in SHAPES},
        decoder_dist_params={m: {"scale": 0.75} for m in SHAPES},
    )
    nets = {"encoders": {m: OurEncoder(s, LATENT) for m, s in SHAPES.items()}}
    nets["decoders"] = {m: OurDecoder(s, LATENT) for m, s in SHAPES.items()}
    if model == "mvae":
        return MVAE(MVAEConfig(**common, use_subsampling=True, k=0, warmup=0, beta=1.0), **nets)
    mmvae = MMVAEConfig(**common, K=k, prior_and_posterior_dist="normal", learn_prior=True, loss="dreg_looser")
    return MMVAE(mmvae, **nets)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, choices=("mvae", "mmvae"))
    p.add_argument("--pairs", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--k", type=int, default=1, help="MMVAE's importance samples (the bench passes config.yaml's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2: the first epoch is warm-up")
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in [n for n in logging.root.manager.loggerDict if n.startswith(("multivae", "pythae"))]:
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.manual_seed(args.seed)
    arrays = synthetic_arrays(args.pairs, args.seed)
    dataset = MultimodalBaseDataset(
        data={m: x.float().div_(255.0) for m, x in arrays.items()}, labels=torch.arange(args.pairs) % 10
    )
    model = build(args.model, args.k)
    no_cuda = args.device == "cpu" or not torch.cuda.is_available()
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="multivae-bench-") as out_dir:
        config = BaseTrainerConfig(
            output_dir=out_dir,
            per_device_train_batch_size=args.batch_size,
            num_epochs=args.epochs,
            learning_rate=1e-4,
            optimizer_cls="Adam",
            steps_saving=None,
            steps_predict=None,
            drop_last=True,
            no_cuda=no_cuda,
            seed=args.seed,
        )
        trainer = BaseTrainer(model=model, train_dataset=dataset, training_config=config, callbacks=[timer])
        t = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t
    steps = args.pairs // args.batch_size
    seconds = sum(e - s for s, e in zip(timer.starts[1:], timer.ends[1:], strict=True))
    from importlib.metadata import version

    result = {
        "status": "ok",
        "model": args.model,
        "multivae": version("multivae"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "timed_epochs": len(timer.ends) - 1,
        "steps_per_epoch": steps,
        "pairs_per_s": (len(timer.ends) - 1) * steps * args.batch_size / seconds,
        "seconds": seconds,
        "train_wall_s": wall,
        "k": args.k if args.model == "mmvae" else None,
    }
    Path(args.out).write_text(json.dumps(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
