"""StyleLipSync networks: encoders, MaLS, SaMF gates and the StyleGAN2 decoder (spec §2), plus loaders."""

from .audio_encoder import AudioEncoder
from .config import StyleLipSyncConfig
from .face_encoder import FaceEncoder, SaMF
from .layers import FullyConnectedLayer, modulated_conv2d, upfirdn2d, upsample2d
from .mals import MaLS, moving_average
from .official import load_official_checkpoint
from .reference_encoder import ReferenceEncoder
from .stylelipsync import InferenceOutput, InferenceStyles, StyleLipSync
from .synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer

__all__ = [
    "AudioEncoder",
    "FaceEncoder",
    "FullyConnectedLayer",
    "InferenceOutput",
    "InferenceStyles",
    "MaLS",
    "ReferenceEncoder",
    "SaMF",
    "StyleLipSync",
    "StyleLipSyncConfig",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "load_official_checkpoint",
    "modulated_conv2d",
    "moving_average",
    "upfirdn2d",
    "upsample2d",
]
