"""Importing torchvision on a CPU-only torch.

PyPI's torchvision 0.28.0 is a CUDA build; against the CPU wheel of torch 2.13.0 its compiled ops
fail to load and ``import torchvision`` raises ``operator torchvision::nms does not exist``. The
Python side only needs the two operator schemas to exist, so we define them and import again
(datasets, transforms and ``utils.make_grid``/``save_image`` then work; ``torchvision.ops`` does
not, and nothing here uses it). With a matching torch build the first import just succeeds.
"""

from __future__ import annotations

import sys

import torch

_library = None  # keeps the schema definitions alive


def import_torchvision():
    global _library
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _library = torch.library.Library("torchvision", "DEF")
        _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision
