"""Training stack: preprocessing, datasets, the shared trainer and the three trainers (spec §4–§5).

* ``preprocess``: videos → dataset directory (crops, pose-aware masks, landmarks, audio, log-mel);
* ``dataset``/``sampler``: memory-mapped, deterministic, person-split samples;
* ``trainer``/``config``: the one Accelerate training loop (resume, checkpoints, logging, export);
* ``train_syncnet``, ``train_stylegan``, ``train_stylelipsync``: the SyncNet expert, the StyleGAN2 decoder and
  StyleLipSync itself (plus the decoder-only adaptation mode that ``stylelipsync.adaptation``, the ``adapt``
  command, builds on; nothing here imports that package or ``stylelipsync.pipelines``);
* ``cli``: the ``preprocess``, ``train-syncnet``, ``train-stylegan``, ``train`` and ``export-checkpoint``
  commands.

Heavy modules are imported lazily by the CLI; see docs/training.md for the recipe.
"""
