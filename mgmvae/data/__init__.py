"""Datasets: raw sources (torchvision), embedded digits, pairing, CDCB colouring, the paired tensors."""

from mgmvae.data.build import DATASET_BUILDERS, build_dataset
from mgmvae.data.paired import DataError, PairedData

__all__ = ["DATASET_BUILDERS", "DataError", "PairedData", "build_dataset"]
