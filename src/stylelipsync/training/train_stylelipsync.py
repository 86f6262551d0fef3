"""StyleLipSync training (``stylelipsync train``), spec §4, and few-shot adaptation (spec §5).

E_aud, E_face (with the SaMF gates), E_ref and MaLS are trained; the StyleGAN2 decoder is loaded from a
``train-stylegan`` export and frozen, or trained jointly with ``train_decoder`` (small configs from scratch).

Loss = λ_l2·MSE(x̂, y) + λ_lpips·perceptual(x̂, y) + λ_sync·(−log p_sync) [+ λ_mouth·L1 on the lips], where
p_sync is the frozen SyncNet expert's probability for the 5 generated frames against the centre frame's mel
window. Small-data additions (off by default): ``loss_region: composite`` takes the pixel losses on
x̂·(1 − K) + y·K, the region that is pasted back; ``lambda_adv`` adds a patch discriminator on that region.
``perceptual`` is LPIPS-VGG16 when ``lpips_weights`` is set, else a logged substitute (MS-SSIM + mouth L1, see
``losses.perceptual``). Validation is on held-out persons, also driven by another person's audio
(checkpoints should be chosen on that, small-data findings §5).

With ``audio_init`` (a ``train-audio`` export) and ``freeze_audio``, E_aud comes pre-trained on mouth opening
and stays frozen (BatchNorm included): the small-data recipe that keeps lip-sync working for unheard speakers.

Adaptation (``adapt: true``, preset ``adapt``): start from a trained model (``init``), tune only the decoder,
keep BatchNorm in eval mode, LPIPS + λ_sync·sync on the target clip + λ_reg_sync·R_sync, where R_sync is the
sync loss of outputs driven by audio of other persons' clips (``reg_data``, default: the training clips).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from stylelipsync.losses.perceptual import PerceptualLoss
from stylelipsync.models.config import StyleLipSyncConfig
from stylelipsync.models.patch_discriminator import PatchDiscriminator, masked_mean
from stylelipsync.models.stylelipsync import StyleLipSync
from stylelipsync.models.syncnet import SyncNetExpert
from stylelipsync.training.config import TrainerConfig
from stylelipsync.training.dataset import (
    ClipInfo,
    DataConfig,
    LipSyncWindowDataset,
    read_manifest,
    split_dataset,
)
from stylelipsync.training.train_audio import load_audio_encoder_weights
from stylelipsync.training.train_stylegan import load_decoder
from stylelipsync.training.train_syncnet import prepare_mel
from stylelipsync.training.trainer import Batch, Trainer, TrainingTask

log = logging.getLogger("stylelipsync.training")

TRAINING_INFO_FILE = "training.json"


@dataclass
class StyleLipSyncTrainConfig:
    """Everything ``train`` needs (YAML-loadable)."""

    model: StyleLipSyncConfig = field(default_factory=StyleLipSyncConfig.paper)
    data: DataConfig = field(default_factory=lambda: DataConfig(color_jitter=0.05))
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            steps=200_000, batch_size=8, image_every=1_000, val_every=5_000, checkpoint_every=5_000
        )
    )
    decoder: str = ""
    train_decoder: bool = False
    syncnet: str = ""
    lpips_weights: str = ""
    lr: float = 1e-4
    lr_decoder: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    lambda_l2: float = 1.0
    lambda_lpips: float = 1.0
    lambda_sync: float = 0.1
    lambda_mouth: float = 0.0
    lambda_opening: float = 0.0
    lambda_reg_sync: float = 0.0
    loss_region: str = "frame"
    lambda_adv: float = 0.0
    lr_disc: float = 2e-4
    disc_channels: tuple[int, ...] = (32, 64, 128)
    init: str = ""
    audio_init: str = ""
    freeze_audio: bool = False
    adapt: bool = False
    reg_data: str = ""
    val_windows: int = 64

    @classmethod
    def preset(cls, name: str) -> StyleLipSyncTrainConfig:
        """``paper`` (256², spec §4), ``small`` (128², CPU) or ``tiny`` (32², tests)."""
        if name == "paper":
            return cls()
        if name == "small":
            return cls(
                model=StyleLipSyncConfig(
                    resolution=128, style_dim=256, channel_base=8192, channel_max=256, audio_channels=32
                ),
                data=DataConfig(resolution=128, color_jitter=0.05, mel_norm="clip", mel_noise=0.05),
                trainer=TrainerConfig(
                    steps=20_000, batch_size=4, image_every=500, val_every=1_000, checkpoint_every=500
                ),
                lambda_mouth=1.0,
            )
        if name == "tiny":
            return cls(
                model=StyleLipSyncConfig.tiny(resolution=32),
                data=DataConfig(resolution=32, color_jitter=0.0),
                trainer=TrainerConfig(
                    steps=20,
                    batch_size=2,
                    num_workers=0,
                    torch_threads=1,
                    log_every=5,
                    image_every=0,
                    val_every=0,
                    checkpoint_every=10,
                ),
                train_decoder=True,
                lambda_mouth=1.0,
                val_windows=4,
            )
        if name == "adapt":
            return cls(
                data=DataConfig(n_val_persons=0, color_jitter=0.0),
                trainer=TrainerConfig(
                    steps=3_000, batch_size=8, image_every=500, val_every=0, checkpoint_every=500
                ),
                adapt=True,
                lambda_l2=0.0,
                lambda_reg_sync=0.1,
            )
        raise ValueError(f"unknown StyleLipSync preset {name!r}; choose tiny, small, paper or adapt")


class StyleLipSyncTask(TrainingTask):
    """Trains the StyleLipSync generator against a frozen SyncNet expert."""

    name = "stylelipsync"

    def __init__(self, config: StyleLipSyncTrainConfig) -> None:
        self.config = config
        self._split: tuple[list[ClipInfo], list[ClipInfo]] | None = None
        self._val: list[Batch] | None = None

    def build(self, trainer: Trainer) -> None:
        cfg = self.config
        self.trainer = trainer
        device = trainer.device
        if cfg.init:
            self.model = StyleLipSync.from_pretrained(cfg.init)
            cfg.model = self.model.config
            self._follow_model_mel_norm()
        else:
            self.model = StyleLipSync(cfg.model)
            if cfg.decoder:
                load_decoder(self.model, cfg.decoder)
            elif not cfg.train_decoder:
                raise ValueError(
                    "no decoder: give --decoder (a `train-stylegan` export), or --train-decoder to train it "
                    "jointly"
                )
        if cfg.audio_init:
            load_audio_encoder_weights(self.model, cfg.audio_init)
        if cfg.adapt:
            if not cfg.init:
                raise ValueError(
                    "adaptation (adapt: true) starts from a trained model: give --init MODEL_DIR"
                )
            self.model.requires_grad_(False)
            self.model.synthesis.requires_grad_(True)
        else:
            self.model.synthesis.requires_grad_(cfg.train_decoder)
            if cfg.freeze_audio:
                self.model.audio_encoder.requires_grad_(False)
        self.model.to(device).set_kernels("auto")  # reference under autograd, fast for validation
        self.opt = torch.optim.Adam(self._param_groups(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.syncnet: SyncNetExpert | None = None
        if cfg.syncnet:
            self.syncnet = SyncNetExpert.from_pretrained(cfg.syncnet, device=device).requires_grad_(False)
            if self.syncnet.config.num_frames != cfg.data.num_frames:
                raise ValueError(
                    f"the SyncNet expert takes {self.syncnet.config.num_frames} frames, data.num_frames is "
                    f"{cfg.data.num_frames}"
                )
        elif cfg.lambda_sync > 0:
            log.warning("no SyncNet expert given (syncnet: PATH): training WITHOUT the lip-sync loss")
        if cfg.lambda_opening > 0 and (self.syncnet is None or not self.syncnet.config.aux_heads):
            raise ValueError(
                "lambda_opening needs a SyncNet expert with aux_heads (syncnet: PATH from `train-syncnet`): "
                "its face branch measures the mouth opening of the generated frames"
            )
        self.perceptual = PerceptualLoss(cfg.lpips_weights or None).to(device)
        if cfg.loss_region not in ("frame", "composite"):
            raise ValueError(f"loss_region must be 'frame' or 'composite', not {cfg.loss_region!r}")
        self.disc: PatchDiscriminator | None = None
        self._fakes: list[Batch] = []
        if cfg.lambda_adv > 0:
            self.disc = PatchDiscriminator(tuple(cfg.disc_channels)).to(device)
            self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr_disc, betas=(0.5, 0.99))

    def _follow_model_mel_norm(self) -> None:
        """Feed an ``init`` model the mel normalisation its config declares (what ``generate`` will use)."""
        wanted = "clip" if self.model.config.mel_normalization == "per_clip" else "none"
        if self.config.data.mel_norm != wanted:
            log.warning(
                "data.mel_norm %r does not match the --init model's mel_normalization %r: using %r",
                self.config.data.mel_norm,
                self.model.config.mel_normalization,
                wanted,
            )
            self.config.data = dataclasses.replace(self.config.data, mel_norm=wanted)

    def _param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters; with ``lr_decoder`` the decoder gets its own rate.

        The decoder's convolution weights are stored N(0, 1) and scaled at run time (StyleGAN2's equalised
        learning rate), so Adam moves them far more slowly, relative to their size, than the encoders'
        conventionally initialised weights: StyleGAN2 trains them at 2e-3, an order above encoder rates.
        """
        cfg = self.config
        decoder = [p for p in self.model.synthesis.parameters() if p.requires_grad]
        ids = {id(p) for p in decoder}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        if cfg.lr_decoder <= 0 or not decoder:
            return [{"params": rest + decoder}]
        groups = [{"params": decoder, "lr": cfg.lr_decoder}]
        return ([{"params": rest}] if rest else []) + groups

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model} | ({"disc": self.disc} if self.disc is not None else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts: dict[str, torch.optim.Optimizer] = {"model": self.opt}
        if self.disc is not None:
            opts["disc"] = self.opt_disc
        return opts

    def split(self) -> tuple[list[ClipInfo], list[ClipInfo]]:
        """(train, val) clips, split by person."""
        if self._split is None:
            self._split = split_dataset(self.config.data)
        return self._split

    def _data_config(self) -> DataConfig:
        return dataclasses.replace(self.config.data, resolution=self.config.model.resolution)

    def train_dataset(self) -> LipSyncWindowDataset:
        pool = None
        if self.config.lambda_reg_sync > 0:
            pool = read_manifest(self.config.reg_data) if self.config.reg_data else self.split()[0]
        return LipSyncWindowDataset(
            self.split()[0],
            self._data_config(),
            augment=True,
            outputs={"frames", "masked", "mouth", "ref"},
            audio_pool=pool,
        )

    def _generator_mel(self, b: Batch, mel: torch.Tensor | None = None) -> torch.Tensor:
        return prepare_mel(
            b["mel"] if mel is None else mel, b["mel_mean"], b["mel_std"], self.config.data.mel_norm
        )

    def _sync_loss(self, x_hat: torch.Tensor, b: Batch, mel: torch.Tensor | None = None) -> torch.Tensor:
        """−log p_sync of the generated clip against its centre frame's mel window."""
        assert self.syncnet is not None
        window = (b["mel"] if mel is None else mel)[:, x_hat.shape[1] // 2]
        window = prepare_mel(window, b["mel_mean"], b["mel_std"], self.syncnet.config.mel_norm)
        return self.syncnet.sync_loss(x_hat.float(), window.float())

    def losses(self, b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts for one batch."""
        cfg = self.config
        x_hat = self.model(b["masked"], self._generator_mel(b), b["ref"], noise_mode="random")
        y = b["frames"]
        flat_hat, flat_y = x_hat.flatten(0, 1).float(), y.flatten(0, 1)
        mouth = b["mouth"].flatten(0, 1)
        keep = b["keep"].flatten(0, 1) if "keep" in b else None
        composite = flat_hat if keep is None else flat_hat * (1 - keep) + flat_y * keep
        if cfg.loss_region == "composite":
            flat_hat = composite
        parts: dict[str, torch.Tensor] = {}
        total = flat_hat.new_zeros(())
        if cfg.lambda_l2 > 0:
            parts["l2"] = F.mse_loss(flat_hat, flat_y)
            total = total + cfg.lambda_l2 * parts["l2"]
        if cfg.lambda_lpips > 0:
            parts["perceptual"] = self.perceptual(flat_hat, flat_y, mouth)
            total = total + cfg.lambda_lpips * parts["perceptual"]
        if cfg.lambda_sync > 0 and self.syncnet is not None:
            parts["sync"] = self._sync_loss(x_hat, b)
            total = total + cfg.lambda_sync * parts["sync"]
        if cfg.lambda_opening > 0 and self.syncnet is not None:
            parts["opening"] = self._opening_loss(x_hat, y, b.get("keep"))
            total = total + cfg.lambda_opening * parts["opening"]
        if cfg.lambda_mouth > 0:
            err = (flat_hat - flat_y).abs() * mouth
            parts["mouth_l1"] = err.sum() / (mouth.sum() * 3).clamp(min=1.0)
            total = total + cfg.lambda_mouth * parts["mouth_l1"]
        if self.disc is not None:
            pasted = 1 - keep if keep is not None else torch.ones_like(flat_y[:, :1])
            region = self.disc.region_weights(pasted)
            parts["adv"] = masked_mean(F.softplus(-self.disc(composite).float()), region)
            total = total + cfg.lambda_adv * parts["adv"]
            self._fakes.append({"fake": composite.detach(), "real": flat_y, "region": region})
        if cfg.lambda_reg_sync > 0 and self.syncnet is not None and "reg_mel" in b:
            reg = {"mel": b["reg_mel"], "mel_mean": b["reg_mel_mean"], "mel_std": b["reg_mel_std"]}
            x_reg = self.model(b["masked"], self._generator_mel(reg), b["ref"], noise_mode="random")
            parts["reg_sync"] = self._sync_loss(x_reg, reg)
            total = total + cfg.lambda_reg_sync * parts["reg_sync"]
        parts = {k: v.detach() for k, v in parts.items()}
        parts["loss"] = total.detach()
        return total, parts

    def _opening_loss(
        self, x_hat: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """MSE between the mouth opening the frozen expert's face branch reads off x̂ and off the truth.

        Pixel losses barely reward a correct mouth opening (a blurred average mouth costs little), so on small
        data the decoder learns to ignore the audio; this term measures the opening itself. The masked input
        hides it, so only the audio styles can supply it. The expert's opening head reaches a correlation of
        0.65 with the landmarks on held-out persons (the shipped demo expert). With the keep-mask K, the
        expert reads the composite x̂·(1 − K) + y·K (what is pasted back): otherwise the decoder fools it by
        tinting the whole face, which the composite never shows.
        """
        assert self.syncnet is not None
        net = self.syncnet
        if keep is not None:
            x_hat = x_hat * (1 - keep) + y * keep
        with torch.no_grad():
            target = net.face_aux(net.face_features(y.float()))
        return F.mse_loss(net.face_aux(net.face_features(x_hat.float())), target)

    def _train_mode(self) -> None:
        """Training mode, except where BatchNorm statistics must not drift: adaptation (spec §5) and a frozen
        pre-trained audio encoder."""
        self.model.train(not self.config.adapt)
        if self.config.freeze_audio:
            self.model.audio_encoder.eval()

    def train_step(self, batches: list[Batch], step: int) -> dict[str, float]:
        self._train_mode()
        self._fakes = []
        if self.disc is None:
            return self.trainer.optimize("model", self.losses, batches)
        self.disc.requires_grad_(False)
        logs = self.trainer.optimize("model", self.losses, batches)
        self.disc.requires_grad_(True)
        logs.update(self.trainer.optimize("disc", self._disc_loss, self._fakes))
        self._fakes = []
        return logs

    def _disc_loss(self, b: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Non-saturating loss of the patch discriminator, real frames vs composites, on the pasted region."""
        assert self.disc is not None
        fake = masked_mean(F.softplus(self.disc(b["fake"]).float()), b["region"])
        real = masked_mean(F.softplus(-self.disc(b["real"]).float()), b["region"])
        loss = fake + real
        return loss, {"disc": loss.detach(), "disc_real": real.detach(), "disc_fake": fake.detach()}

    # ------------------------------------------------------------------ validation
    def _val_batches(self) -> list[Batch]:
        if self._val is None:
            val = self.split()[1]
            if not val:
                self._val = []
                return self._val
            ds = LipSyncWindowDataset(
                val, self._data_config(), augment=False, outputs={"frames", "masked", "mouth", "ref"}
            )
            rng = np.random.default_rng(99)
            idx = np.sort(rng.choice(len(ds), size=min(len(ds), self.config.val_windows), replace=False))
            items = [ds[int(i)] for i in idx]
            perm = np.roll(np.arange(len(items)), max(1, len(items) // 2))
            for it, j in zip(items, perm, strict=True):
                other = items[int(j)]
                it["other_mel"] = other["mel"]
                it["other_mel_mean"], it["other_mel_std"] = other["mel_mean"], other["mel_std"]
            size = self.config.trainer.batch_size
            self._val = [default_collate(items[i : i + size]) for i in range(0, len(items), size)]
        return self._val

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        batches = self._val_batches()
        if not batches:
            return {}
        self.model.eval()
        sums: dict[str, float] = {}
        for raw in batches:
            b = self.trainer.to_device(raw)
            _, parts = self.losses(b)
            self._fakes = []
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if self.syncnet is not None:
                cross = {
                    **b,
                    "mel": b["other_mel"],
                    "mel_mean": b["other_mel_mean"],
                    "mel_std": b["other_mel_std"],
                }
                x_cross = self.model(b["masked"], self._generator_mel(cross), b["ref"], noise_mode="const")
                sums["sync_cross"] = sums.get("sync_cross", 0.0) + float(self._sync_loss(x_cross, cross))
        self._train_mode()
        return {k: v / len(batches) for k, v in sums.items()}

    @torch.no_grad()
    def images(self, step: int) -> dict[str, torch.Tensor]:
        batches = self._val_batches()
        if not batches:
            return {}
        b = self.trainer.to_device(batches[0])
        self.model.eval()
        x_hat = self.model(b["masked"], self._generator_mel(b), b["ref"], noise_mode="const")
        self._train_mode()
        c = x_hat.shape[1] // 2
        keep = b["keep"][:, c] if "keep" in b else 1.0
        composite = x_hat[:, c] * (1 - keep) + b["frames"][:, c] * keep
        rows = [b["masked"][:, c], b["ref"][:, 0], x_hat[:, c], composite, b["frames"][:, c]]
        return {"val_masked_ref_output_composite_truth": torch.cat(rows, dim=0)}

    def export(self, out_dir: Path) -> None:
        self.export_modules(self.config, {"model": self.model.state_dict()}, out_dir)

    @staticmethod
    def export_modules(config: Any, states: dict[str, Any], out_dir: Path) -> None:
        """``StyleLipSync.save_pretrained`` plus ``training.json`` (mel normalisation the model expects)."""
        model = StyleLipSync(config.model)
        model.load_state_dict(states["model"])
        model.save_pretrained(out_dir)
        info = {
            "mel_norm": config.data.mel_norm,
            "resolution": config.model.resolution,
            "syncnet": config.syncnet,
            "decoder": config.decoder,
            "train_decoder": config.train_decoder,
            "init": config.init,
            "adapt": config.adapt,
            "perceptual": "lpips" if config.lpips_weights else "msssim_mouth_l1",
        }
        (Path(out_dir) / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
