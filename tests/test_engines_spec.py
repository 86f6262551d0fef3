"""Engine spec, registry and `load_engine`: one way to build an engine, from plain values that pickle.

The spec crosses process boundaries (service workers, Ray actors) in place of a loaded model, so these tests
check that it survives pickling, that the registry names real engine classes, that `load_engine` builds
the same network `load_model` loads (the bit-identical outputs of `generate` rest on that), and that
naming an engine imports no engine package (which is what keeps `pipelines` ↔ `engines` free of cycles).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import torch

from stylelipsync.errors import CheckpointError
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.pipelines.engines import DEFAULT_ENGINE, ENGINES, Engine, EngineSpec
from stylelipsync.pipelines.engines.bank import MouthBankEngine
from stylelipsync.pipelines.engines.loader import engine_class, load_engine
from stylelipsync.pipelines.engines.registry import REGISTRY
from stylelipsync.pipelines.engines.stylelipsync import load_model
from stylelipsync.pipelines.engines.stylelipsync.engine import StyleLipSyncEngine


def test_every_registered_engine_is_an_engine_class_of_that_name() -> None:
    assert tuple(REGISTRY) == ENGINES and DEFAULT_ENGINE in ENGINES
    for name in ENGINES:
        cls = engine_class(name)
        assert issubclass(cls, Engine) and cls.name == name
    with pytest.raises(ValueError, match="unknown engine 'gan'; choose one of: bank, stylelipsync"):
        engine_class("gan")


def test_a_spec_resolves_the_engine_like_the_cli_and_pickles() -> None:
    assert EngineSpec.resolve() == EngineSpec("bank")
    assert EngineSpec.resolve(checkpoint="m").name == "stylelipsync"
    assert EngineSpec.resolve(engine="stylelipsync") == EngineSpec("stylelipsync")  # the shipped demo
    spec = EngineSpec.resolve(None, "model.pth", "w_avg.pth", precision="bf16", compile="inductor")
    assert spec.checkpoint == Path("model.pth") and spec.w_avg == Path("w_avg.pth")
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.absolute().checkpoint == Path.cwd() / "model.pth"
    with pytest.raises(FrozenInstanceError):
        spec.name = "bank"  # type: ignore[misc]
    with pytest.raises(CheckpointError, match="--checkpoint selects the stylelipsync engine"):
        EngineSpec.resolve("bank", "model")
    with pytest.raises(CheckpointError, match=r"w_avg \(w.pth\) goes with an official .pth checkpoint"):
        EngineSpec.resolve(w_avg="w.pth")
    with pytest.raises(ValueError, match="unknown engine 'neural'"):
        EngineSpec("neural")


def test_load_engine_builds_the_network_load_model_loads(tiny_model_dir: Path) -> None:
    spec = EngineSpec.resolve(checkpoint=tiny_model_dir, precision="bf16")
    engine = load_engine(spec, "cpu")
    assert isinstance(engine, StyleLipSyncEngine) and engine.device == torch.device("cpu")
    assert engine.runner.precision == "bf16" and not engine.model.training
    reference = load_model(tiny_model_dir).state_dict()
    loaded = engine.model.state_dict()
    assert list(loaded) == list(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert isinstance(load_engine(EngineSpec("bank")), MouthBankEngine)


def test_a_pipeline_from_a_spec_loads_its_model_at_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The network engine is built when the pipeline is made (a bad checkpoint fails there, naming it);
    the bank engine only on its first use."""
    pipe = LipSyncPipeline.from_spec(EngineSpec.resolve(checkpoint=tiny_model_dir), device="cpu")
    assert pipe.default_engine == "stylelipsync" and set(pipe._engines) == {"stylelipsync"}
    bank = LipSyncPipeline.from_spec(EngineSpec(), device="cpu")
    assert bank.default_engine == "bank" and bank._engines == {}
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=f"checkpoint {missing} does not exist"):
        LipSyncPipeline.from_spec(EngineSpec.resolve(checkpoint=missing), device="cpu")


def test_naming_an_engine_imports_no_engine_and_no_torch() -> None:
    """`GenerateOptions` checks engine names through `stylelipsync.pipelines.engines`; if that imported an
    engine (whose modules import the pipeline's), `pipelines` and `engines` would import each other. The whole
    pipeline package imports no engine and no PyTorch either, until an engine is built."""
    code = (
        "import sys\n"
        "from stylelipsync.pipelines.engines import EngineSpec, check_engine\n"
        "from stylelipsync.pipelines import GenerateOptions, LipSyncPipeline\n"
        "GenerateOptions(engine=check_engine('stylelipsync')); EngineSpec('stylelipsync')\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "stylelipsync.pipelines.lipsync" in loaded and "stylelipsync.pipelines.engines.registry" in loaded
    engines = {
        "stylelipsync.pipelines.engines.bank",
        "stylelipsync.pipelines.engines.stylelipsync.engine",
        "torch",
    }
    assert not loaded & engines
