"""The reimplementation reproduces the official StyleLipSync outputs; official checkpoints load strictly."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylelipsync.errors import CheckpointError
from stylelipsync.models import Kernels, StyleLipSync, StyleLipSyncConfig, load_official_checkpoint


def rebuild_official_state_dict(recipe: dict) -> dict[str, torch.Tensor]:
    """Regenerate the fixture's official state dict from recipe.json, checking every checksum."""
    state: dict[str, torch.Tensor] = {}
    for entry in recipe["weights"]:
        shape = entry["shape"]
        if entry["mode"] == "fixed":
            tensor = torch.tensor(entry["values"], dtype=getattr(torch, entry["dtype"])).reshape(shape)
        else:
            assert entry["mode"] == "randn", entry["key"]
            generator = torch.Generator().manual_seed(entry["seed"])
            tensor = (
                torch.randn(shape, generator=generator, dtype=torch.float32) * entry["scale"]
                + entry["offset"]
            )
            total = tensor.double().sum().item()
            assert total == pytest.approx(entry["checksum_sum"], rel=1e-6, abs=1e-4), entry["key"]
            np.testing.assert_allclose(
                tensor.flatten()[:4].numpy(), entry["first"], rtol=1e-6, err_msg=entry["key"]
            )
        state[entry["key"]] = tensor
    return state


@pytest.fixture(scope="module")
def fixture_dir(fixtures_dir: Path) -> Path:
    path = fixtures_dir / "official_equivalence"
    if not (path / "recipe.json").is_file():
        pytest.fail(f"official equivalence fixture missing at {path}")
    return path


@pytest.fixture(scope="module")
def official_ckpt(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = json.loads((fixture_dir / "recipe.json").read_text())
    state = rebuild_official_state_dict(recipe)
    assert len(state) == 422
    path = tmp_path_factory.mktemp("official") / "ckpt.pth"
    torch.save({"G": state}, path)
    return path


TOLERANCES = {"audio_styles": 2e-5, "reference_styles": 2e-5, "styles": 2e-5, "x_hat": 5e-5}
"""Max abs difference allowed from the official outputs: about 3× the float32 round-off measured on this CPU
(styles ≤ 6.7e-6 and x̂ ≤ 1.5e-5 with the inference kernels; ≤ 3.8e-6 and ≤ 6.2e-6 with the reference
operators), so a real change of 1e-4 anywhere fails."""


@pytest.fixture(scope="module")
def official_model(official_ckpt: Path, fixture_dir: Path) -> StyleLipSync:
    tensors = np.load(fixture_dir / "tensors.npz")
    return load_official_checkpoint(official_ckpt, w_avg=torch.from_numpy(tensors["w_avg"]))


FAST_KERNELS = {
    "stylelipsync.models.synthesis": (
        "modulated_conv2d_fast",
        "modulated_1x1_fast",
        "upsample2d_fast",
        "bias_lrelu_",
    ),
    "stylelipsync.models.blocks": ("instance_norm_relu_",),
}
REFERENCE_OPERATORS = {"stylelipsync.models.synthesis": ("modulated_conv2d", "upsample2d", "bias_lrelu")}
"""The operators each kernel setting calls, by the module that calls them (where a test patches them)."""


def operator_names(operators: dict[str, tuple[str, ...]]) -> set[str]:
    return {name for names in operators.values() for name in names}


def count_calls(monkeypatch: pytest.MonkeyPatch, operators: dict[str, tuple[str, ...]]) -> Counter[str]:
    """Wrap each operator so that calling it counts; returns the (live) counter."""
    calls: Counter[str] = Counter()

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for module, names in operators.items():
        for name in names:
            fn = getattr(importlib.import_module(module), name)
            monkeypatch.setattr(f"{module}.{name}", counting(name, fn))
    return calls


def forbid(monkeypatch: pytest.MonkeyPatch, operators: dict[str, tuple[str, ...]]) -> None:
    """Make each operator raise, so that a path using it fails loudly."""
    for module, names in operators.items():
        for name in names:

            def refuse(*args: Any, _name: str = name, **kwargs: Any) -> Any:
                raise AssertionError(f"{_name} called")

            monkeypatch.setattr(f"{module}.{name}", refuse)


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_official_equivalence(
    official_model: StyleLipSync,
    official_ckpt: Path,
    fixture_dir: Path,
    kernels: Kernels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both kernel settings reproduce the official outputs: the fast inference kernels (what `generate`
    runs) and the reference operators (what training runs); call counts prove each ran its own path."""
    tensors = np.load(fixture_dir / "tensors.npz")
    model = official_model.set_kernels(kernels)
    assert not model.training
    fast_calls = count_calls(monkeypatch, FAST_KERNELS)
    reference_calls = count_calls(monkeypatch, REFERENCE_OPERATORS)
    out = model.infer(
        torch.from_numpy(tensors["x"][0]),
        torch.from_numpy(tensors["mel"][0]),
        torch.from_numpy(tensors["ref"][0]),
        chunk_size=4,
        return_styles=True,
    )
    own, ran, skipped = (
        (FAST_KERNELS, fast_calls, reference_calls)
        if kernels == "fast"
        else (REFERENCE_OPERATORS, reference_calls, fast_calls)
    )
    assert set(ran) == operator_names(own) and not skipped, (ran, skipped)
    diffs = {
        "audio_styles": out.styles.audio_styles,
        "reference_styles": out.styles.reference_styles,
        "styles": out.styles.styles,
        "x_hat": out.frames,
    }
    for name, value in diffs.items():
        expected = torch.from_numpy(tensors[name])
        assert value.shape == expected.shape, name
        max_diff = (value - expected).abs().max().item()
        assert max_diff <= TOLERANCES[name], f"{kernels} kernels, {name}: max abs diff {max_diff:.3g}"
    if kernels == "reference":
        return

    # The same checkpoint saved from a DDP-wrapped model ('module.' prefixes) loads to identical tensors.
    state = torch.load(official_ckpt, weights_only=True)["G"]
    prefixed = official_ckpt.with_name("ddp.pth")
    torch.save({"G": {f"module.{k}": v for k, v in state.items()}, "step": 3000}, prefixed)
    del state
    w_avg_path = official_ckpt.with_name("w_avg.pth")
    torch.save({"w_avg": torch.from_numpy(tensors["w_avg"])}, w_avg_path)
    ddp_model = load_official_checkpoint(prefixed, w_avg=w_avg_path)
    reference_state = model.state_dict()
    for key, value in ddp_model.state_dict().items():
        assert torch.equal(value, reference_state[key]), key


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_each_kernel_setting_runs_only_its_own_operators(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other path's operators raise, and every operator of this path is called: "reference" and "fast"
    cannot silently be the same path, so the equivalence test above really checks both."""
    model = StyleLipSync(StyleLipSyncConfig.tiny()).eval().set_kernels(kernels)
    own, other = (
        (FAST_KERNELS, REFERENCE_OPERATORS) if kernels == "fast" else (REFERENCE_OPERATORS, FAST_KERNELS)
    )
    forbid(monkeypatch, other)
    calls = count_calls(monkeypatch, own)
    g = torch.Generator().manual_seed(0)
    res = model.config.resolution
    x, ref = torch.rand(3, 3, res, res, generator=g), torch.rand(3, res, res, generator=g)
    model.infer(x, torch.randn(3, 20, 80, generator=g), ref, chunk_size=3)
    assert set(calls) == operator_names(own), calls


def test_fast_kernels_refuse_an_autograd_graph() -> None:
    """Training with "fast" fails with the fix in the message; "auto" trains on the reference operators."""
    model = StyleLipSync(StyleLipSyncConfig.tiny())
    res = model.config.resolution
    x, mel, ref = torch.rand(1, 2, 3, res, res), torch.randn(1, 2, 20, 80), torch.rand(1, 3, res, res)
    with pytest.raises(
        RuntimeError, match=r"kernels='fast' but autograd is recording.*set_kernels\('auto'\)"
    ):
        model.set_kernels("fast")(x, mel, ref)
    model.set_kernels("auto")(x, mel, ref).square().mean().backward()
    assert model.synthesis.b4.conv1.weight.grad is not None
    with pytest.raises(ValueError, match="kernels must be one of"):
        model.set_kernels("fused")  # type: ignore[arg-type]
    assert {m.kernels for m in model.modules() if hasattr(m, "kernels")} == {"auto"}


# ------------------------------------------------------------------------------------ error handling


@pytest.fixture()
def tiny_official(tmp_path: Path) -> tuple[StyleLipSyncConfig, dict[str, torch.Tensor], Path]:
    config = StyleLipSyncConfig.tiny()
    torch.manual_seed(0)
    state = {k: v for k, v in StyleLipSync(config).state_dict().items() if k != "w_avg"}
    path = tmp_path / "tiny.pth"
    torch.save({"G": state}, path)
    return config, state, path


def test_tiny_official_checkpoint_round_trip(tiny_official: tuple, tmp_path: Path) -> None:
    config, state, path = tiny_official
    w_avg = torch.randn(config.style_dim)
    model = load_official_checkpoint(path, w_avg=w_avg, config=config)
    loaded = model.state_dict()
    assert torch.equal(loaded["w_avg"], w_avg)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    with pytest.warns(UserWarning, match="w_avg"):
        zero = load_official_checkpoint(path, config=config)
    assert torch.count_nonzero(zero.w_avg) == 0


def test_official_checkpoint_errors(tiny_official: tuple, tmp_path: Path) -> None:
    config, state, path = tiny_official
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match=r"nope\.pth.*not found"):
        load_official_checkpoint(missing, config=config)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth.*cannot read"):
        load_official_checkpoint(garbage, config=config)

    no_g = tmp_path / "no_g.pth"
    torch.save({"state_dict": state}, no_g)
    with pytest.raises(CheckpointError, match=r"no_g\.pth.*'G'"):
        load_official_checkpoint(no_g, config=config)

    partial = dict(state)
    del partial["synthesis.b4.const"]
    partial["synthesis.extra"] = torch.zeros(1)
    bad_keys = tmp_path / "bad_keys.pth"
    torch.save({"G": partial}, bad_keys)
    with pytest.raises(
        CheckpointError, match=r"bad_keys.pth.*missing keys: synthesis\.b4\.const.*unexpected keys"
    ):
        load_official_checkpoint(bad_keys, config=config)

    reshaped = dict(state)
    reshaped["mals.0.conv.0.bias"] = torch.zeros(3)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save({"G": reshaped}, bad_shape)
    with pytest.raises(
        CheckpointError, match=r"bad_shape.pth.*mals\.0\.conv\.0\.bias \(expected \[64\], found \[3\]\)"
    ):
        load_official_checkpoint(bad_shape, config=config)

    # The paper config refuses the tiny weights instead of loading them partially.
    with pytest.raises(CheckpointError, match="does not fit"):
        load_official_checkpoint(path)

    wrong_w_avg = tmp_path / "w_avg.pth"
    torch.save({"w_avg": torch.zeros(7)}, wrong_w_avg)
    with pytest.raises(CheckpointError, match=r"w_avg\.pth.*64 values"):
        load_official_checkpoint(path, w_avg=wrong_w_avg, config=config)
    torch.save({"mean": torch.zeros(64)}, wrong_w_avg)
    with pytest.raises(CheckpointError, match="key 'w_avg'"):
        load_official_checkpoint(path, w_avg=wrong_w_avg, config=config)
