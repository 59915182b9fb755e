"""The speed benchmark (``python -m mgmvae.bench``): ``measure`` times the trainings, ``report`` is the command."""
