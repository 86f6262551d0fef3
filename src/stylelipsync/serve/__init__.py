"""`stylelipsync serve`: an HTTP dubbing service with a job queue (SQLite), worker processes and a web page.

Layout: `db` (the job table, shared by every process), `uploads` (streaming multipart to disk with a size
limit), `checks` (input validation, run in a separate checker process), `worker` (the dubbing processes and
their supervisor), `service` (all of it started and stopped together), `app` (the FastAPI routes), `cli`
(the click command). Nothing here imports torch in the HTTP process: only the worker and checker processes
load the model and the media stack. See docs/serve.md.
"""
