"""StyleLipSync networks: encoders, MaLS, SaMF gates and the StyleGAN2 decoder (spec §2), plus loaders."""

from .audio_encoder import AudioEncoder
from .config import StyleLipSyncConfig
from .face_encoder import FaceEncoder, SaMF
from .layers import (
    KERNELS,
    FullyConnectedLayer,
    KernelModule,
    Kernels,
    modulated_conv2d,
    upfirdn2d,
    upsample2d,
)
from .mals import MaLS, moving_average
from .official import load_official_checkpoint
from .reference_encoder import ReferenceEncoder
from .runtime import PRECISIONS, InferenceRunner, cpu_has_native_bf16
from .stylelipsync import InferenceOutput, InferenceStyles, StyleLipSync
from .synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer

__all__ = [
    "KERNELS",
    "PRECISIONS",
    "AudioEncoder",
    "FaceEncoder",
    "FullyConnectedLayer",
    "InferenceOutput",
    "InferenceRunner",
    "InferenceStyles",
    "KernelModule",
    "Kernels",
    "MaLS",
    "ReferenceEncoder",
    "SaMF",
    "StyleLipSync",
    "StyleLipSyncConfig",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "cpu_has_native_bf16",
    "load_official_checkpoint",
    "modulated_conv2d",
    "moving_average",
    "upfirdn2d",
    "upsample2d",
]
