"""A model plugin outside the benchmark's packages: ``model`` keeps the contract, ``broken`` does not."""
