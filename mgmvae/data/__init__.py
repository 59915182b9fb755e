"""Datasets: the dataset interface, the built-in sources (raw MNIST/SVHN/PolyMNIST files, the
embedded digits), pairing, CDCB colouring, the paired tensors."""

from mgmvae.data.dataset import Dataset, ParamError
from mgmvae.data.paired import DataError, PairedData

__all__ = ["DataError", "Dataset", "PairedData", "ParamError"]
