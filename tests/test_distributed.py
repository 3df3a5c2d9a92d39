"""The Trainer under torch.distributed: two gloo ranks against one process.

One subprocess imports torch once and forks the ranks of each scenario (so a scenario costs
the training, not three torch imports); each rank finds its rank and the rendezvous in the
environment variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), exactly as under torchrun, and ``Trainer.fit`` initialises and destroys the
process group itself. ``test_torchrun_launch`` (slow) runs the same case under torchrun.

The objective is deterministic — exact (Hyvärinen) score matching, a mean over the batch —
so two ranks with half of the global batch each must reproduce the single-process run up to
float rounding.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

CASE = textwrap.dedent('''
    """Shared by the test process (reference run) and the forked ranks."""
    import json
    import multiprocessing
    import os
    import sys
    import traceback

    import torch

    import ebmflow


    class ExactScoreMatching(ebmflow.Objective):
        """J = mean over the batch of ½‖∇ₓE‖² − ΔₓE (Hyvärinen 2005); no randomness.
        ``fail_at``: raise at that (1-based) call on rank ``fail_rank``."""

        def __init__(self, fail_at: int = 0, fail_rank: int = -1):
            super().__init__()
            self.fail_at, self.fail_rank = fail_at, fail_rank
            self.calls = 0

        def forward(self, energy, batch, *, generator=None):
            self.calls += 1
            if self.calls == self.fail_at and int(os.environ.get("RANK", "0")) == self.fail_rank:
                raise RuntimeError(f"rank {self.fail_rank} fails on purpose at step {self.calls}")
            x = batch.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
            laplacian = sum(
                torch.autograd.grad(grad[:, j].sum(), x, create_graph=True)[0][:, j]
                for j in range(x.shape[1])
            )
            loss = (0.5 * grad.pow(2).sum(1) - laplacian).mean()
            return ebmflow.ObjectiveOutput(loss, {"grad_sq": float(grad.detach().pow(2).mean())})


    class Plugin:
        @ebmflow.hookimpl
        def ebmflow_objectives(self):
            return [ebmflow.Component("exact-sm", ExactScoreMatching)]


    def make_host():
        host = ebmflow.PluginHost(entry_points=False)
        host.register(Plugin(), name="distcase")
        return host


    def make_trainer(host, *, steps=6, fail_at=0, fail_rank=-1, **kwargs):
        with torch.random.fork_rng():
            torch.manual_seed(int(os.environ.get("RANK", "0")))  # ranks start apart
            energy = host.create("energy", "mlp", dim=2, widths=[16])
        return ebmflow.Trainer(
            energy, ExactScoreMatching(fail_at, fail_rank), host.create("dataset", "8gaussians"),
            optimizer={"name": "adam", "lr": 1e-2}, batch_size=64, steps=steps, seed=3,
            log_every=2, progress=False, host=host, **kwargs)


    def rank_main(rank, world, port, out, scenario):
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        try:
            host = make_host()
            folder = os.path.join(out, scenario)
            files = dict(checkpoint_dir=os.path.join(folder, "checkpoint"),
                         metrics_file=os.path.join(folder, "metrics.jsonl"))
            if scenario == "fail":
                make_trainer(host, fail_at=3, fail_rank=1, **files).fit()
            elif scenario == "split":
                make_trainer(host, checkpoint_every=2, **files).fit(until=3)
                make_trainer(host, checkpoint_every=2, **files).fit(resume=True)
            else:
                trainer = make_trainer(host, checkpoint_every=2, **files)
                trainer.fit()
                state = {k: v.contiguous() for k, v in trainer.energy.state_dict().items()}
                from safetensors.torch import save_file
                save_file(state, os.path.join(folder, f"params-rank{rank}.safetensors"))
                assert not torch.distributed.is_initialized()  # fit destroyed its group
        except BaseException as exc:
            with open(os.path.join(out, f"{scenario}-rank{rank}.error"), "w") as f:
                f.write(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
            sys.exit(1)


    def launch(out, scenario, port, timeout):
        """Fork two ranks; wait for them without ever killing one early."""
        ctx = multiprocessing.get_context("fork")
        ranks = [ctx.Process(target=rank_main, args=(r, 2, port, out, scenario))
                 for r in range(2)]
        for p in ranks:
            p.start()
        for p in ranks:
            p.join(timeout)
        hung = [r for r, p in enumerate(ranks) if p.is_alive()]
        for p in ranks:
            if p.is_alive():
                p.kill()
        return {"exitcodes": [p.exitcode for p in ranks], "hung": hung}


    if __name__ == "__main__":
        out, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
        # import here what the ranks would each import (they are forked from this process)
        import safetensors.torch
        import torch._dynamo  # optimizers import it on their first step
        import torch.distributed
        make_trainer(make_host())
        report = {}
        for scenario, port in zip(("straight", "split", "fail"), ports):
            report[scenario] = launch(out, scenario, port, timeout=40)
        print(json.dumps(report))
''')


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path.cwd()), env.get("PYTHONPATH", "")) if p
    )
    return env


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "dist_case.py").write_text(CASE)
    spec = importlib.util.spec_from_file_location("dist_case", folder / "dist_case.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return folder, module


@pytest.fixture(scope="module")
def two_ranks(case):
    folder, _ = case
    out = folder / "runs"
    out.mkdir()
    ports = ",".join(map(str, _free_ports(3)))
    result = subprocess.run(
        [sys.executable, str(folder / "dist_case.py"), str(out), ports],
        capture_output=True,
        text=True,
        timeout=150,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return out, report, result.stderr


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(case, two_ranks):
    _, module = case
    out, report, stderr = two_ranks
    assert report["straight"] == {"exitcodes": [0, 0], "hung": []}, stderr[-3000:]
    reference = module.make_trainer(module.make_host())
    reference.fit()
    rank0 = load_file(str(out / "straight" / "params-rank0.safetensors"))
    rank1 = load_file(str(out / "straight" / "params-rank1.safetensors"))
    for name, value in reference.energy.state_dict().items():
        # rank 0's initial weights were broadcast, so both ranks hold the same weights
        assert torch.equal(rank0[name], rank1[name]), name
        # (g₀ + g₁)/2 vs the full-batch gradient differ by float32 rounding only
        torch.testing.assert_close(rank0[name], value, atol=1e-6, rtol=0)
    # metrics: written once (rank 0), averaged over ranks, equal to the reference's
    lines = (out / "straight" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [2, 4, 6]
    for got, want in zip(records, reference.history):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
        assert got["grad_sq"] == pytest.approx(want["grad_sq"], rel=1e-5)


def test_distributed_checkpoint_holds_every_ranks_state_and_resumes_identically(two_ranks):
    out, report, stderr = two_ranks
    assert report["split"] == {"exitcodes": [0, 0], "hung": []}, stderr[-3000:]
    checkpoint = out / "straight" / "checkpoint"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["metadata"]["training"]["world_size"] == 2
    tensors = load_file(str(checkpoint / "training.safetensors"))
    assert {"generator.objective.rank0", "generator.objective.rank1"} <= set(tensors)
    assert not torch.equal(
        tensors["generator.objective.rank0"], tensors["generator.objective.rank1"]
    )  # rank-local streams
    # stopping at step 3 and resuming (new Trainer, new process group) is bit-identical
    split = out / "split" / "checkpoint"
    for name in ("model.safetensors", "training.safetensors"):
        a, b = load_file(str(checkpoint / name)), load_file(str(split / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (out / "split" / "metrics.jsonl").read_text() == (
        out / "straight" / "metrics.jsonl"
    ).read_text()


def test_a_failing_rank_ends_the_run_with_its_error_and_no_hang(two_ranks):
    out, report, stderr = two_ranks
    # every rank exited by itself within the launcher's 40 s, none was killed
    assert report["fail"]["hung"] == [], stderr[-3000:]
    assert report["fail"]["exitcodes"] == [1, 1]
    assert "rank 1 fails on purpose at step 3" in (out / "fail-rank1.error").read_text()
    message = (out / "fail-rank0.error").read_text()
    assert "training step 3" in message and "another rank" in message


@pytest.mark.slow
def test_torchrun_launch_trains_and_writes_one_checkpoint(case, tmp_path):
    folder, module = case
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(folder)!r})
        import dist_case
        trainer = dist_case.make_trainer(dist_case.make_host(),
                                         checkpoint_dir={str(tmp_path / "ckpt")!r})
        trainer.fit()
        print("rank", trainer.rank, "of", trainer.world_size, "step", trainer.step)
    """)
    )
    port = _free_ports(1)[0]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2 step 6" in result.stdout and "rank 1 of 2 step 6" in result.stdout
    import ebmflow

    host = module.make_host()
    assert isinstance(ebmflow.load(tmp_path / "ckpt", host=host), ebmflow.Energy)
