"""ebmflow's performance harness: each ebmflow path against a hand-written PyTorch loop
doing identical work, timed in one process with interleaved repetitions.

Run ``python -m benchmarks`` (``--quick`` for a smoke run); results go to
``bench-results/benchmarks.json`` and ``bench-results/benchmarks.md``.
"""
