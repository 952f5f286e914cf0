"""``python -m benchmark sweep``: plan a grid of runs, then submit it to SLURM or run it on this machine.

A sweep is a set of fine-tuning runs (one run record each) plus one pretraining job per distinct encoder
(method, seed, mask ratio) that those runs load. Fine-tuning jobs start after their pretraining job
succeeded (SLURM ``afterok``); runs that already have a record are skipped, so submitting a half-finished
sweep again submits only what is missing. Every planned job is listed in the manifest
``<results>/sweeps/<name>.json``, which ``python -m benchmark status`` reads; submitit keeps the jobs'
pickles and logs in ``<results>/slurm/<name>/``.

The job callables hold only strings and numbers: on the node they rerun the CLI's config resolution and
resolve the device there. Preempted or timed out, they are requeued and the engines resume from their own
per-epoch checkpoints; a run whose record exists is a no-op, so a requeued job never writes a record twice.
"""
