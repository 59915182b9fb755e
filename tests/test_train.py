"""The shared loop: seeded, resumable from its checkpoint, stops cleanly on a non-finite loss."""

import pytest
import torch

from mgmvae.io import load_torch
from mgmvae.registry import build_model
from mgmvae.seeding import seed_everything
from mgmvae.train import CheckpointMismatchError, NonFiniteLossError, train_model
from tests.conftest import CUDA, TOY_SETTINGS, evaluation_settings


def run(data, settings=TOY_SETTINGS, seed=0, **kwargs):
    seed_everything(seed)
    model = build_model("mvae", data.shapes, settings)
    history = train_model(model, data, settings, seed=seed, progress=False, **kwargs)
    return model, history


def test_same_seed_gives_identical_numbers(toy_data):
    (m1, h1), (m2, h2) = run(toy_data), run(toy_data)
    assert h1 == h2
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    _, h3 = run(toy_data, seed=1)
    assert h3 != h1


def test_loss_decreases_and_every_term_is_logged(toy_data):
    _, history = run(toy_data, {**TOY_SETTINGS, "epochs": 4})
    assert history[-1]["loss"] < history[0]["loss"]
    assert {"loss", "joint/kl", "joint/recon_a", "a/recon_a", "b/recon_b", "epoch"} <= set(history[0])


def test_bfloat16_networks_train_like_float32_and_stay_seeded(toy_data):
    """precision=bfloat16 (nets under autocast, float32 loss terms) learns, repeats bitwise for a
    seed, and tracks the float32 run's losses to bf16 accuracy."""
    settings = {**TOY_SETTINGS, "epochs": 4, "precision": "bfloat16"}
    (model, low), (_, again) = run(toy_data, settings), run(toy_data, settings)
    _, ref = run(toy_data, {**settings, "precision": "float32"})
    assert low == again
    assert low[-1]["loss"] < low[0]["loss"]
    for a, b in zip(low, ref, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.02)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_resume_from_checkpoint_matches_uninterrupted_run(toy_data, tmp_path):
    full_model, full = run(toy_data, {**TOY_SETTINGS, "epochs": 3})
    ckpt = tmp_path / "checkpoint.pt"
    run(toy_data, {**TOY_SETTINGS, "epochs": 2}, checkpoint=ckpt, config_hash="h")
    assert load_torch(ckpt)["epoch"] == 2
    # A new process would start from scratch: scramble the global RNG to prove the state is restored.
    torch.manual_seed(12345)
    model = build_model("mvae", toy_data.shapes, TOY_SETTINGS)
    resumed = train_model(
        model, toy_data, {**TOY_SETTINGS, "epochs": 3}, seed=0, checkpoint=ckpt, config_hash="h", progress=False
    )
    assert resumed == full
    for a, b in zip(model.state_dict().values(), full_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_resumes_on_a_gpu_with_its_rng_states_on_the_cpu(toy_data, tmp_path, monkeypatch):
    """What a run on ``cuda:0`` does with a checkpoint, without a GPU: the file loads to the CPU
    and every RNG setter gets a CPU ByteTensor (torch.set_rng_state and torch.cuda.set_rng_state
    refuse anything else), the CUDA one with the run's device."""
    import numpy as np

    from mgmvae import train

    ckpt = tmp_path / "checkpoint.pt"
    model, _ = run(toy_data, {**TOY_SETTINGS, "epochs": 1}, checkpoint=ckpt, config_hash="h")
    saved = load_torch(ckpt)
    saved["rng"]["cuda"] = saved["rng"]["torch"].clone()  # as a GPU run writes it
    torch.save(saved, ckpt)
    got: dict = {}
    monkeypatch.setattr(torch, "set_rng_state", lambda state: got.setdefault("torch", state))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: got.setdefault("cuda", (state, device)))
    monkeypatch.setattr(np.random, "set_state", lambda state: got.setdefault("numpy", state))

    state = train.load_checkpoint(ckpt, "h")
    optimizer = train.make_optimizer(model, TOY_SETTINGS)
    history, epoch = train.resume(state, model, optimizer, torch.device("cuda:0"))
    assert (len(history), epoch) == (1, 1)
    cuda_state, cuda_device = got["cuda"]
    for tensor in (got["torch"], cuda_state):
        assert (tensor.device.type, tensor.dtype) == ("cpu", torch.uint8)
    assert cuda_device == torch.device("cuda:0") and got["numpy"][1].dtype == np.uint32


def test_checkpoint_of_another_config_is_refused(toy_data, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    run(toy_data, {**TOY_SETTINGS, "epochs": 1}, checkpoint=ckpt, config_hash="one")
    with pytest.raises(CheckpointMismatchError, match="another configuration"):
        run(toy_data, checkpoint=ckpt, config_hash="two")


def test_non_finite_loss_names_term_and_epoch_and_keeps_last_checkpoint(toy_data, tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoint.pt"
    run(toy_data, {**TOY_SETTINGS, "epochs": 1}, checkpoint=ckpt, config_hash="h")
    before = ckpt.read_bytes()
    model = build_model("mvae", toy_data.shapes, TOY_SETTINGS)
    original = model.loss

    def poisoned(batch):
        terms = original(batch)
        terms["joint/kl"] = terms["joint/kl"] * float("nan")
        return terms

    monkeypatch.setattr(model, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"joint/kl.*epoch 2"):
        train_model(model, toy_data, TOY_SETTINGS, seed=0, checkpoint=ckpt, config_hash="h", progress=False)
    assert ckpt.read_bytes() == before


def test_missing_modality_inference(toy_data):
    model, _ = run(toy_data, {**TOY_SETTINGS, "epochs": 1})
    batch = toy_data.batch("test", torch.arange(4))
    assert model.embed({"a": batch["a"], "b": None}, ["a", "b"]).shape == (4, 4)
    assert model.generate({"b": batch["b"]}, "b", "a").shape == (4, 1, 28, 28)
    terms = model.loss({"a": batch["a"], "b": None})
    assert torch.isfinite(terms["loss"])


# GPU kernels (cuBLAS split-K, atomics in convolution backward) may add in a different order run to
# run: there the same config and seed must agree to this tolerance, not bitwise.
def _train_and_evaluate(data, device):
    from mgmvae.evaluation.run import evaluate_model
    from mgmvae.nets import digit_classifier

    data = data.to(device)
    settings = {
        **TOY_SETTINGS,
        "likelihood": {"family": "bernoulli", "scale": 0.75},
        "epochs": 3,
        "params": {"mixture_init_epoch": 1, "semi_hard_from_epoch": 2, "mixture_init_samples": 64},
    }
    seed_everything(0)
    model = build_model("mgmvae", data.shapes, settings).to(device)
    history = train_model(model, data, settings, seed=0, progress=False)
    torch.manual_seed(1)  # untrained but seeded classifiers: enough to compare two runs
    classifiers = {m: digit_classifier(data.shape(m), "mmvae").to(device).eval() for m in data.modalities}
    metrics = evaluate_model(
        model,
        data,
        classifiers,
        evaluation_settings(
            batch_size=16, probe_max_train=64, max_cluster=32, likelihood_samples=0, quality_samples=64
        ),
        seed=0,
        protocol="mean",
    )
    return history, metrics, model.state_dict()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_same_config_and_seed_give_the_same_metrics(toy_data, device):
    """Training (mixture fit and semi-hard mining included) and evaluation, twice: bitwise equal, on
    a GPU as on the CPU (seed_everything's deterministic kernels; what determinism promises on one
    machine kind)."""
    (h1, m1, s1), (h2, m2, s2) = _train_and_evaluate(toy_data, device), _train_and_evaluate(toy_data, device)
    assert h1 == h2 and m1 == m2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_the_optimizer_is_the_one_settings_name_with_the_sections_arguments():
    from mgmvae import train

    model = torch.nn.Linear(2, 1)
    adam = train.make_optimizer(model, {"optimizer": {"name": "adam", "lr": 0.01, "amsgrad": True}})
    assert type(adam) is torch.optim.Adam and (adam.defaults["lr"], adam.defaults["amsgrad"]) == (0.01, True)
    adamw = train.make_optimizer(
        model, {"optimizer": {"name": "adamw", "lr": 0.01, "amsgrad": False, "weight_decay": 0.05}}
    )
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.05
