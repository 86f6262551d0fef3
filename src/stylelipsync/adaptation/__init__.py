"""Few-shot adaptation of a trained model to one person (spec §5): ``stylelipsync adapt``.

    from stylelipsync.adaptation.pipeline import AdaptationPipeline, AdaptOptions

    pipe = AdaptationPipeline("models/base", syncnet="runs/syncnet/export", lpips_weights="vgg_lpips.pth")
    result = pipe("target.mp4", "models/alice", audio_pool="other_speakers/", validate_audio="speech.wav")
    print(result.summary())

1. ``data``: the target video is preprocessed exactly like training data (``training.preprocess``: 256²
   crops, pose-aware masks, 25 fps, 16 kHz) and split in time: the last ``holdout`` fraction of its frames
   goes into a separate held-out clip that adaptation never reads, neither as target nor as reference frame;
   the audio pool (other speakers' audio or video files, or the clips of a training dataset) becomes
   audio-only clips in the training mel format;
2. ``task``: the shared Accelerate trainer tunes only the decoder (``StyleLipSyncTask`` with ``adapt: true``;
   encoders, SaMF gates and MaLS frozen, the model in eval mode so BatchNorm statistics cannot drift) on
   LPIPS(x̂, y) + λ_sync·L_sync(x̂, a) + λ_reg·R_sync, R_sync being the sync loss of the target's masked
   frames driven by the pool's audio; no ℓ2 and no identity loss (they cause flicker, spec §5);
3. ``output``: the model is written to ``PERSON_DIR`` (``config.json``, ``model.safetensors``,
   ``training.json``, ``adapt.json``), each file through a temporary name and a rename, so a failure never
   leaves a half model; the work folder is ``PERSON_DIR/.adapt_run``, so a run can be resumed;
4. ``validation``: optionally, reconstruction PSNR/SSIM on the held-out frames (base vs adapted model) and a
   preview video of the held-out part driven by new speech;
5. ``pipeline`` (``AdaptationPipeline``, ``AdaptOptions``, ``AdaptResult``) runs these steps; ``cli`` is the
   ``adapt`` command, registered by ``stylelipsync.cli``.

This package sits above ``training``, ``models``, ``evaluation`` and ``pipelines`` and nothing below imports
it. It exports nothing here on purpose: ``cli`` is imported when the root CLI starts and must not pull in
PyTorch or the training stack, which the other modules import.
"""
