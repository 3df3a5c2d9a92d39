"""ebmflow's performance harness: each ebmflow path against a hand-written PyTorch loop
doing identical work, timed in one process with interleaved repetitions, plus absolute
figures (start-up time, memory growth of long runs).

Groups (one module each, ``cases(size, ...)``): ``startup``, ``samplers`` (langevin, mala,
hmc, annealed-langevin, 1000 no-op submodules, GMM), ``memory``, ``compiled``
(``run(compile=...)``), ``tempering`` (parallel tempering), ``score`` (dsm, multiscale-dsm,
ssm), ``objectives`` (cd, pcd, jem), ``trainer`` (a Trainer iteration) and ``diffusers``
(EBMScheduler in DDPMPipeline).

Run ``python -m benchmarks`` (``--clock cpu`` on a shared machine; ``--quick`` for a look,
``--tiny`` to check that everything runs); results go to ``bench-results/benchmarks.json``
and ``bench-results/benchmarks.md``; ``python -m benchmarks.readme`` (or ``--readme
docs/guide/benchmarks.md``) rewrites the docs' table from the JSON.
"""
