"""Bad input is refused cleanly: a ConfigError or a clear CLI error, never a traceback."""

import contextlib
import copy
import io
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgmvae import paths
from mgmvae.cli import main
from mgmvae.config import ROOT, ConfigError, load_config, validate
from tests.conftest import TOY_SETTINGS

BASE = load_config()
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def key_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from key_paths(value, prefix + (key,))


PATHS = sorted(key_paths(BASE), key=str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=SCALARS, delete=st.booleans())
def test_random_mutations_are_valid_or_refused_naming_a_key(path, value, delete):
    config = copy.deepcopy(BASE)
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    try:
        validate(config)
    except ConfigError as error:
        assert "config key '" in str(error)


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12),
    stage=st.sampled_from(["prepare", "train", "classifier", "evaluate"]),
)
def test_unknown_dataset_names_exit_cleanly(name, stage):
    if name in BASE["datasets"]:
        return
    extra = {"train": ["--model", "mvae"], "evaluate": ["--model", "mvae"], "classifier": ["--modality", "a"]}
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([stage, "--dataset", name, "--no-mlflow", *extra.get(stage, [])])
    assert code == 2 and "unknown dataset" in err.getvalue()


def test_unknown_model_exits_cleanly(capsys):
    assert main(["train", "--dataset", "digits_street", "--model", "nope", "--no-mlflow"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_missing_inputs_name_the_stage_to_run(tmp_path, capsys):
    args = ["--no-mlflow", "--config", str(ROOT / "config.yaml")]
    assert (
        main(["train", "--dataset", "digits_street", "--model", "mvae", "--data", str(tmp_path / "x.pt"), *args]) == 2
    )
    assert "run the 'prepare' stage first" in capsys.readouterr().err
    assert (
        main(
            ["evaluate", "--dataset", "digits_street", "--model", "mvae", "--model-file", str(tmp_path / "m.pt"), *args]
        )
        == 2
    )
    assert "run the 'train' stage first" in capsys.readouterr().err


def test_truncated_dataset_file_is_refused(tmp_path, capsys):
    from tests.conftest import synthetic_paired

    path = tmp_path / "toy.pt"
    synthetic_paired().save(path)
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["train", "--dataset", "digits_street", "--model", "mvae", "--data", str(path), "--no-mlflow"]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_wrong_image_shape_is_refused():
    from mgmvae.registry import build_model

    with pytest.raises(ValueError, match="no network for images of shape"):
        build_model("mvae", {"a": (1, 32, 32), "b": (3, 32, 32)}, {**TOY_SETTINGS, "shared_dim": 4, "private_dim": 0})


def test_bad_preset_file_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump([1, 2, 3]))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(ROOT / "config.yaml", bad)


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "mgmvae", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "prepare" in out.stdout and "evaluate" in out.stdout


def test_full_disk_stops_cleanly_and_leaves_nothing_half_written(tmp_path):
    """A real process whose writes fail part-way (RLIMIT_FSIZE: every write past 64 kB fails, as on
    a full disk) exits with a message naming the problem and leaves no partial or temporary file."""
    import resource

    from tests.conftest import synthetic_paired

    data = tmp_path / "toy.pt"
    synthetic_paired().save(data)
    run = tmp_path / "run"
    limit = 64 * 1024  # the toy MVAE checkpoint is ~4 MB

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mgmvae",
            "train",
            "--dataset",
            "mnist_svhn",
            "--model",
            "mvae",
            "--data",
            str(data),
            "--out",
            str(paths.model_file(run)),
            "--threads",
            "1",
            "--no-mlflow",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "out of disk space" in result.stderr and paths.checkpoint_file(run).name in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in run.iterdir()) == [], "a partial or temporary file was left behind"
