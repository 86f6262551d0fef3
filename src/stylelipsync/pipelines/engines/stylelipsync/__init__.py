"""The StyleLipSync engine: the network of the paper (or the shipped demo model) renders the lower face.

* `checkpoint`: finding and loading the weights (`load_model`, `default_checkpoint`); imports PyTorch only
  when it loads;
* `engine`: `StyleLipSyncEngine`, the loaded network and its inference runner (imports PyTorch).
"""

from stylelipsync.pipelines.engines.stylelipsync.checkpoint import default_checkpoint, load_model

__all__ = ["default_checkpoint", "load_model"]
