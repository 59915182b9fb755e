"""Encoders and decoders per modality shape, shared by every model, and the digit classifiers.

- 1×28×28 (MNIST, hand digits) and 3×32×32 (SVHN, street digits, CD, CB): MMVAE's nets (iffsid/mmvae,
  src/models/vae_mnist.py and vae_svhn.py, ``Enc``/``Dec``): an MLP 784→400→L, and Conv(3→32→64→128,
  k4 s2 p1) to 128×4×4 (its k4 conv head on a 4×4 map is a linear layer), mirrored by the decoders.
- 3×28×28 (PolyMNIST): MoPoE's (thomassutter/MoPoE, mmnist/networks/ConvNetworksImgCMNIST.py,
  ``EncoderImg``/``DecoderImg``): Conv(3→32→64→128, k3 s2 p1), Linear(2,048→L_total), ReLU, the heads
  (its ``class_*``/``style_*`` as one linear layer); the decoder mirrors it (output padding 0, 1, 1).
Decoders return logits. ``precision`` (config ``settings``): bfloat16 runs the nets under autocast and
hands float32 back; tf32 lets a GPU round matrix inputs to TF32 (docs/speed.md). On a CPU the
convolutional nets run ``CPU_CHUNK`` rows at a time: one call on 1,024 or 2,560 rows fell out of cache,
1.6-1.8x slower (torch 2.13, 1 thread); the per-row cost is flat up to 128.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shape = tuple[int, int, int]
CPU_CHUNK = 128
MLP_SHAPE: Shape = (1, 28, 28)
CNN_SHAPE: Shape = (3, 32, 32)
POLY_SHAPE: Shape = (3, 28, 28)
CONV_SHAPES = (CNN_SHAPE, POLY_SHAPE)
PRECISIONS = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16}


def compute_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a ``precision`` setting, with an error naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def set_float32_math(precision: str) -> None:
    """Make a ``precision`` setting mean on a GPU what it says, for the rest of the process.
    ``float32``, and ``bfloat16``'s float32 parts: IEEE float32 for matrix products and cuDNN
    convolutions (torch's default runs convolutions in TF32 on Ampere and later GPUs, matrix
    products not). ``tf32``: both in TF32 (a 10-bit mantissa; faster on those GPUs). CPUs are
    untouched: these are the CUDA and cuDNN flags (``float32_math`` reads them back for the run)."""
    compute_dtype(precision)
    mode = "tf32" if precision == "tf32" else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode  # type: ignore[attr-defined]  # set in torch/backends/cudnn/__init__.py at import, unknown to the stubs


def float32_math() -> dict[str, str]:
    """The process's float32 math and determinism, as a run records them."""
    return {
        "fp32_matmul": torch.backends.cuda.matmul.fp32_precision,
        "fp32_conv": torch.backends.cudnn.conv.fp32_precision,  # type: ignore[attr-defined]  # as above
        "deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
    }


def run_in(dtype: torch.dtype, net, x: Tensor) -> Tensor:
    """``net(x)``; for a lower ``dtype`` under autocast, its output handed back as float32.
    (float32 runs as is, so a model moved to float64 for a gradient check stays float64.)"""
    if dtype == torch.float32:
        return net(x)
    with torch.autocast(x.device.type, dtype=dtype):
        out = net(x)
    return out.float()


def run_chunked(net: nn.Module, x: Tensor, chunk: int = CPU_CHUNK) -> Tensor:
    """``net(x)``, a chunk of rows at a time on a CPU (same values; gradients flow through)."""
    if x.device.type != "cpu" or len(x) <= chunk:
        return net(x)
    return torch.cat([net(part) for part in x.split(chunk)])


class EncoderOutput(NamedTuple):
    shared_loc: Tensor
    shared_scale: Tensor  # log-variance (Gaussian) or raw scale (Laplace), see distributions.posterior
    private_loc: Tensor | None
    private_scale: Tensor | None


CHANNELS = (3, 32, 64, 128)  # the convolutional nets' channels, image to 128×4×4 map


def _convs(kernel: int) -> list[nn.Module]:
    """Conv(3→32→64→128, k ``kernel`` s2 p1), each followed by ReLU."""
    return [layer for c_in, c_out in pairwise(CHANNELS) for layer in (nn.Conv2d(c_in, c_out, kernel, 2, 1), nn.ReLU())]


def _deconvs(latent_dim: int, kernel: int, output_padding: tuple[int, int, int]) -> nn.Sequential:
    """Linear(L→128·4·4), ReLU, then ConvTranspose(128→64→32→3, k ``kernel`` s2 p1) with ReLU between."""
    layers: list[nn.Module] = [nn.Linear(latent_dim, 128 * 4 * 4), nn.ReLU(), nn.Unflatten(-1, (128, 4, 4))]
    for c_in, c_out, pad in zip(CHANNELS[:0:-1], CHANNELS[-2::-1], output_padding, strict=True):
        layers += [nn.ConvTranspose2d(c_in, c_out, kernel, 2, 1, output_padding=pad), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _body(shape: Shape, hidden: int) -> tuple[nn.Module, int]:
    """The encoder up to its heads, and its output width (``hidden``: MoPoE's L_total layer)."""
    if tuple(shape) == MLP_SHAPE:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU()), 400
    if tuple(shape) == CNN_SHAPE:
        return nn.Sequential(*_convs(4), nn.Flatten()), 128 * 4 * 4
    if tuple(shape) == POLY_SHAPE:
        return nn.Sequential(*_convs(3), nn.Flatten(), nn.Linear(128 * 4 * 4, hidden), nn.ReLU()), hidden
    raise ValueError(
        f"no network for images of shape {tuple(shape)}; supported: {MLP_SHAPE} (MLP), {CNN_SHAPE} (CNN) "
        f"and {POLY_SHAPE} (PolyMNIST CNN)"
    )


class Encoder(nn.Module):
    """x -> parameters of q(z_shared | x) and, if ``private_dim`` > 0, of q(h_private | x)."""

    def __init__(self, shape: Shape, shared_dim: int, private_dim: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.dtype = dtype
        self.body, features = _body(shape, shared_dim + private_dim)
        self.shared_dim, self.private_dim = shared_dim, private_dim
        self.head = nn.Linear(features, 2 * (shared_dim + private_dim))
        self.chunked = tuple(shape) in CONV_SHAPES

    def forward(self, x: Tensor) -> EncoderOutput:
        body = (lambda v: run_chunked(self.body, v)) if self.chunked else self.body
        params = run_in(self.dtype, lambda v: self.head(body(v)), x)
        s, p = self.shared_dim, self.private_dim
        shared_loc, shared_scale = params[:, :s], params[:, s : 2 * s]
        if p == 0:
            return EncoderOutput(shared_loc, shared_scale, None, None)
        private = params[:, 2 * s :]
        return EncoderOutput(shared_loc, shared_scale, private[:, :p], private[:, p:])


class Decoder(nn.Module):
    """latent [..., L] -> logits [..., C, H, W]."""

    def __init__(self, shape: Shape, latent_dim: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.shape, self.dtype = tuple(shape), dtype
        if self.shape == MLP_SHAPE:
            self.net = nn.Sequential(nn.Linear(latent_dim, 400), nn.ReLU(), nn.Linear(400, 784))
        elif self.shape == CNN_SHAPE:
            self.net = _deconvs(latent_dim, 4, (0, 0, 0))  # the Linear = MMVAE's ConvTranspose(L→128, k4) on 1×1
        elif self.shape == POLY_SHAPE:
            self.net = _deconvs(latent_dim, 3, (0, 1, 1))
        else:
            _body(shape, latent_dim)  # raises the helpful error

    def forward(self, latent: Tensor) -> Tensor:
        lead = latent.shape[:-1]
        flat = latent.reshape(-1, latent.shape[-1])
        net = (lambda v: run_chunked(self.net, v)) if self.shape in CONV_SHAPES else self.net
        return run_in(self.dtype, net, flat).reshape(*lead, *self.shape)


# ------------------------------------------------------------ digit classifiers
# The digit classifiers that score coherence (config ``classifier.network``): ``mmvae``, MMVAE's
# (iffsid/mmvae, src/report/helper.py, ``MNIST_Classifier``/``SVHN_Classifier``; its flattened size follows
# the input), and ``clf_img``, PolyMNIST's ``ClfImg`` (its references: docs/datasets.md). Both return logits.
SUPPORTED_SHAPES: dict[tuple[int, int, int], int] = {(1, 28, 28): 320, (3, 28, 28): 320, (3, 32, 32): 500}


class DigitClassifier(nn.Module):
    """Conv(C->10,k5)-maxpool-ReLU-Conv(10->20,k5)-Dropout2d-maxpool-ReLU-FC(F->50)-ReLU-dropout-FC(50->10).

    Every digit classifier keeps one contract: ``features(x)`` returns its penultimate activations
    (here the 50 after FC(F->50)-ReLU) and ``forward(x) == head(features(x))``."""

    network = "mmvae"

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = classifier_shape(shape)
        self.conv1 = nn.Conv2d(self.shape[0], 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(SUPPORTED_SHAPES[self.shape], 50)
        self.fc2 = nn.Linear(50, 10)

    def features(self, x: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        return F.relu(self.fc1(x.flatten(1)))

    def head(self, features: Tensor) -> Tensor:
        return self.fc2(F.dropout(features, training=self.training))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ClfImg(nn.Module):
    """Conv(3->10,k4 s2 p1)-Dropout2d(.5)-ReLU-Conv(10->20,k4 s2 p1)-Dropout2d(.5)-ReLU-FC(980->128)-Dropout(.5)-
    ReLU-FC(128->10): one ``encoder`` as in the references, whose state dicts (``encoder.{0,3,7,10}.*``) load as is."""

    network = "clf_img"

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        if tuple(shape) != POLY_SHAPE:
            raise ValueError(
                f"ClfImg takes {POLY_SHAPE} images (PolyMNIST's), not {tuple(shape)}: set classifier.network"
            )
        self.shape = POLY_SHAPE
        self.encoder = nn.Sequential(
            *(nn.Conv2d(3, 10, kernel_size=4, stride=2, padding=1), nn.Dropout2d(0.5), nn.ReLU()),  # -> 10×14×14
            *(nn.Conv2d(10, 20, kernel_size=4, stride=2, padding=1), nn.Dropout2d(0.5), nn.ReLU()),  # -> 20×7×7
            *(nn.Flatten(), nn.Linear(980, 128), nn.Dropout(0.5), nn.ReLU()),
            nn.Linear(128, 10),
        )

    def features(self, x: Tensor) -> Tensor:
        """The penultimate activations [N, 128]."""
        return self.encoder[:-1](x)

    def head(self, features: Tensor) -> Tensor:
        return self.encoder[-1](features)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


Classifier = DigitClassifier | ClfImg
CLASSIFIERS: dict[str, type[Classifier]] = {"mmvae": DigitClassifier, "clf_img": ClfImg}


def classifier_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if shape not in SUPPORTED_SHAPES:
        raise ValueError(
            f"no digit classifier for input shape {shape}: supported shapes are "
            f"{sorted(SUPPORTED_SHAPES)} (MNIST-like 1x28x28, SVHN-like 3x32x32)"
        )
    return shape


def digit_classifier(shape: Sequence[int], network: str) -> Classifier:
    """The digit classifier ``network`` (a key of CLASSIFIERS) for images of ``shape`` = (C, H, W)."""
    if network not in CLASSIFIERS:
        raise ValueError(f"unknown classifier network {network!r}; choose one of {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[network](shape)
