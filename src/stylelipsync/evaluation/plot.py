"""`--plot`: per-frame SyncNet confidence and mouth opening vs audio energy, one row of panels per video."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stylelipsync.evaluation.report import VideoResult

MAX_VIDEOS = 12


def plot_results(results: Sequence[VideoResult], path: str | Path) -> Path:
    """Write a PNG (Agg backend): left, LSE per-frame confidence; right, z-scored mouth/energy/prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(results)[:MAX_VIDEOS]
    fig, axes = plt.subplots(len(shown), 2, figsize=(14, 2.4 * len(shown) + 0.6), squeeze=False)
    for row, res in zip(axes, shown, strict=True):
        conf_ax, sync_ax = row
        fps = float(res.curves["fps"][0]) if "fps" in res.curves else 25.0
        if "lse_conf" in res.curves:
            conf = res.curves["lse_conf"]
            conf_ax.plot(np.arange(len(conf)) / 25.0, conf, color="tab:purple", lw=1)
            conf_ax.axhline(0, color="grey", lw=0.5)
            lse_d, lse_c = res.values.get("lse_d"), res.values.get("lse_c")
            title = f"LSE-D {lse_d:.2f}  LSE-C {lse_c:.2f}"
        else:
            conf_ax.text(0.5, 0.5, "LSE unavailable (no SyncNet weights)", ha="center", va="center",
                         transform=conf_ax.transAxes, color="grey")  # fmt: skip
            title = "SyncNet per-frame confidence"
        conf_ax.set_title(f"{res.name}: {title}", fontsize=9, loc="left")
        conf_ax.set_ylabel("confidence", fontsize=8)
        if "mouth" in res.curves:
            t = np.arange(len(res.curves["mouth"])) / fps
            sync_ax.plot(t, res.curves["energy"], color="tab:orange", lw=0.8, alpha=0.8, label="audio energy")
            sync_ax.plot(
                t, res.curves["predicted"], color="tab:green", lw=0.8, label="mouth predicted from audio"
            )
            sync_ax.plot(t, res.curves["mouth"], color="black", lw=1.1, label="mouth opening (video)")
            sync_ax.set_title(
                f"sync (a) energy r={res.values.get('sync_energy', float('nan')):.2f}  "
                f"(b) predicted r={res.values.get('sync_pred', float('nan')):.2f}",
                fontsize=9,
                loc="left",
            )
            sync_ax.legend(fontsize=7, loc="upper right", ncol=3)
        else:
            sync_ax.text(
                0.5, 0.5, "no offline sync curves", ha="center", va="center", transform=sync_ax.transAxes
            )
        sync_ax.set_ylabel("z-score", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
