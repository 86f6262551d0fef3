"""`stylelipsync batch` and `generate --jobs`: many dubbing jobs from a CSV, locally or on a Ray cluster.

Layout: `jobs` (the jobs CSV: paths and per-row options), `manifest` (the results CSV that makes a batch
resumable), `runner` (one loop that records and reports outcomes, over a local pipeline or a pool of Ray
actors), `cli` (the click command). Ray is imported only when `--ray` is used. See docs/batch.md.
"""
