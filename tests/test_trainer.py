"""ebmflow.Trainer: seeded runs, exact resume, checkpoints, divergence errors, clipping, EMA,
schedules and argument checks, on small objectives defined here."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import ebmflow
from ebmflow.cli import main
from ebmflow.trainer import LRSchedule, Trainer, TrainingDivergedError


class TinyPCD(ebmflow.Objective):
    """Persistent contrastive divergence in miniature: ``n_chains`` persistent ULA chains (a
    buffer, so it is checkpointed), ``k`` steps per call with noise from ``generator``;
    loss = mean E(data) − mean E(chains)."""

    def __init__(self, n_chains: int = 32, k: int = 2, step_size: float = 0.05) -> None:
        super().__init__()
        self.k, self.step_size = k, step_size
        self.register_buffer("chains", torch.zeros(n_chains, 2))

    def forward(self, energy, batch, *, generator=None):
        x = self.chains
        for _ in range(self.k):
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x = x + self.step_size * energy.score(x) + math.sqrt(2 * self.step_size) * noise
        self.chains.copy_(x)
        positive, negative = energy(batch).mean(), energy(x).mean()
        gap = (negative - positive).detach()
        return ebmflow.ObjectiveOutput(positive - negative, {"energy_gap": float(gap)})


class Scripted(ebmflow.Objective):
    """Mean energy of the batch, with a failure injected at call ``at`` (1-based):
    ``"nan-loss"``, ``"nan-grad"`` (finite loss, NaN gradient) or ``"sampler"``."""

    def __init__(self, failure: str = "", at: int = 0) -> None:
        super().__init__()
        self.failure, self.at, self.calls = failure, at, 0
        self.batches: list[torch.Tensor] = []

    def forward(self, energy, batch, *, generator=None):
        self.calls += 1
        self.batches.append(batch)
        loss = energy(batch).mean()
        if self.calls == self.at:
            if self.failure == "nan-loss":
                loss = loss * float("nan")
            elif self.failure == "nan-grad":  # d/dθ sqrt(0·θ) = 0·∞ = NaN, value 0
                loss = loss + (next(energy.parameters()).sum() * 0).sqrt()
            elif self.failure == "objective-error":
                raise ebmflow.EbmflowError("scripted: the loss is nan")
            elif self.failure == "sampler":
                raise ebmflow.SamplerDivergedError(
                    "langevin diverged at step 7: non-finite energy in 3 of 32 chains",
                    step=7,
                    n_chains=3,
                )
        return ebmflow.ObjectiveOutput(loss, {"mean_energy": float(loss.detach())})


class Plugin:
    @ebmflow.hookimpl
    def ebmflow_objectives(self):
        return [ebmflow.Component("tiny-pcd", TinyPCD), ebmflow.Component("scripted", Scripted)]


@pytest.fixture(scope="module")
def host():
    host = ebmflow.PluginHost(entry_points=False)
    host.register(Plugin(), name="trainer-tests")
    return host


def mlp(host, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return host.create("energy", "mlp", dim=2, widths=[16])


def trainer(host, objective=None, data=None, **kwargs):
    kwargs = {"batch_size": 32, "steps": 6, "progress": False, "log_every": 1, **kwargs}
    data = host.create("dataset", "8gaussians") if data is None else data
    return Trainer(mlp(host), objective or TinyPCD(), data, host=host, **kwargs)


def params(t):
    return [p.detach().clone() for p in t.energy.parameters()]


def test_fit_never_touches_the_global_rng(host):
    before = torch.get_rng_state()
    trainer(host, ema=0.9).fit()
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_run_other_seed_other_run(host):
    a, b, c = trainer(host), trainer(host), trainer(host, seed=1)
    ha, hb, hc = a.fit(), b.fit(), c.fit()
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    assert all(torch.equal(p, q) for p, q in zip(params(a), params(b)))
    assert [r["loss"] for r in ha] != [r["loss"] for r in hc]


RESUMABLE = {
    "optimizer": {"name": "adam", "lr": 3e-3},
    "lr_schedule": {"name": "cosine", "warmup": 2},
    "grad_clip": 0.5,
    "ema": 0.8,
    "log_every": 3,
    "checkpoint_every": 2,
    "steps": 8,
}


@pytest.mark.parametrize("data_kind", ["dataset", "tensor"])
def test_stopping_and_resuming_is_bit_identical_to_a_straight_run(host, tmp_path, data_kind):
    def data():
        if data_kind == "dataset":
            return host.create("dataset", "8gaussians")
        return torch.linspace(-1, 1, 2 * 45).reshape(45, 2)  # 45 rows: a partial last batch

    straight = trainer(host, data=data(), checkpoint_dir=tmp_path / "a", **RESUMABLE)
    straight.fit()
    # k = 5 steps: mid-epoch (tensor data) and mid-logging-interval (log_every = 3)
    trainer(host, data=data(), checkpoint_dir=tmp_path / "b", **RESUMABLE).fit(until=5)
    assert (
        json.loads((tmp_path / "b" / "config.json").read_text())["metadata"]["training"]["step"]
        == 5
    )
    resumed = Trainer.resume(
        tmp_path / "b", host=host, progress=False, data=None if data_kind == "dataset" else data()
    )
    assert resumed.step == 5
    resumed.fit()
    assert resumed.history == straight.history  # losses, grad norms, lrs, metrics
    assert all(torch.equal(p, q) for p, q in zip(params(straight), params(resumed)))
    assert torch.equal(straight.objective.chains, resumed.objective.chains)
    for name in ("model.safetensors", "training.safetensors", "objective.safetensors"):
        a, b = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_fit_resume_true_continues_from_the_checkpoint_or_starts_fresh(host, tmp_path):
    first = trainer(host, checkpoint_dir=tmp_path / "run")
    first.fit(resume=True)  # nothing to resume: a fresh run
    assert first.step == 6
    again = trainer(host, checkpoint_dir=tmp_path / "run", steps=8)
    again.fit(resume=True)
    assert [r["step"] for r in again.history] == list(range(1, 9))
    assert again.history[:6] == first.history


def test_checkpoint_is_an_energy_checkpoint_holding_the_ema_weights(host, tmp_path, capsys):
    t = trainer(host, ema=0.5, checkpoint_dir=tmp_path / "ckpt")
    t.fit()
    folder = tmp_path / "ckpt"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "objective.safetensors",
        "training.json",
        "training.safetensors",
    ]  # JSON and safetensors only: no pickle
    energy = ebmflow.load(folder, host=host)
    ema = t.ema_state_dict()
    assert all(torch.equal(v, ema[k]) for k, v in energy.state_dict().items())
    assert not torch.equal(ema["net.0.weight"], t.energy.state_dict()["net.0.weight"])
    raw = load_file(str(folder / "training.safetensors"))
    assert torch.equal(raw["weights.net.0.weight"], t.energy.net[0].weight)
    assert (
        main(
            [
                "evaluate",
                str(folder),
                "--data",
                "8gaussians",
                "--n",
                "100",
                "--resolution",
                "64",
                "--json",
            ]
        )
        == 0
    )
    assert math.isfinite(json.loads(capsys.readouterr().out)["nll"])


def test_optimizer_state_round_trips_exactly(host, tmp_path):
    a = trainer(
        host,
        optimizer={"name": "adamw", "lr": 1e-2, "betas": [0.8, 0.9]},
        checkpoint_dir=tmp_path / "c",
    )
    a.fit()
    b = trainer(host, optimizer={"name": "adamw", "lr": 1e-2, "betas": [0.8, 0.9]})
    b.load_checkpoint(tmp_path / "c")
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i, state in sa["state"].items():
        assert state.keys() == sb["state"][i].keys()
        assert all(torch.equal(v, sb["state"][i][k]) for k, v in state.items())


def test_nonfinite_loss_raises_naming_the_step_and_keeps_the_last_checkpoint(host, tmp_path):
    t = trainer(host, Scripted("nan-loss", at=4), checkpoint_dir=tmp_path / "c", checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match="step 4 of 6") as info:
        t.fit()
    assert info.value.step == 4 and "at step 2, is intact" in str(info.value)
    good = trainer(host, Scripted())
    good.fit(until=2)
    assert all(
        torch.equal(p, q)
        for p, q in zip(params(good), ebmflow.load(tmp_path / "c", host=host).parameters())
    )
    good.fit(until=3)
    assert t.step == 3  # the update of step 4 was not applied
    assert all(torch.equal(p, q) for p, q in zip(params(good), params(t)))


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_nonfinite_gradient_with_a_finite_loss_raises(host, grad_clip):
    t = trainer(host, Scripted("nan-grad", at=3), grad_clip=grad_clip)
    with pytest.raises(TrainingDivergedError, match=r"step 3 of 6.*gradient norm nan"):
        t.fit()
    assert t.step == 2 and all(torch.isfinite(p).all() for p in t.energy.parameters())


def test_sampler_divergence_names_the_training_step(host):
    with pytest.raises(
        ebmflow.SamplerDivergedError, match=r"training step 3 of 6: langevin diverged at step 7"
    ) as info:
        trainer(host, Scripted("sampler", at=3)).fit()
    assert (info.value.step, info.value.n_chains) == (7, 3)


def test_an_objectives_own_error_names_the_training_step(host):
    with pytest.raises(ebmflow.EbmflowError, match="training step 2 of 6: scripted: the loss"):
        trainer(host, Scripted("objective-error", at=2)).fit()


def test_batched_checks_on_accelerators_still_name_the_step_and_spare_the_checkpoint(
    host, tmp_path
):
    # on accelerators the NaN check is read at log and checkpoint steps (no device sync per
    # step); emulate that on the CPU
    t = trainer(
        host,
        Scripted("nan-loss", at=3),
        log_every=4,
        checkpoint_every=2,
        checkpoint_dir=tmp_path / "c",
    )
    t._monitor.check_every_step = False
    with pytest.raises(TrainingDivergedError, match="step 3 of 6") as info:
        t.fit()
    assert info.value.step == 3 and "at step 2, is intact" in str(info.value)
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["metadata"]["training"]["step"] == 2  # the checkpoint at 4 was refused


def test_grad_clip_bounds_the_gradient_norm(host):
    # SGD with lr 1: the update is the (clipped) gradient itself
    t = trainer(host, Scripted(), optimizer={"name": "sgd", "lr": 1.0}, grad_clip=1e-3, steps=1)
    before = params(t)
    t.fit()
    step = torch.cat([(b - a).reshape(-1) for a, b in zip(params(t), before)])
    assert t.history[0]["grad_norm"] > 1e-2  # the raw gradient is larger than the bound
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_ema_is_the_exponential_moving_average_of_the_parameters(host):
    d = 0.7
    t = trainer(host, Scripted(), optimizer={"name": "sgd", "lr": 0.1}, ema=d, steps=4)
    expected = params(t)
    for step in range(1, 5):
        t.fit(until=step)
        expected = [d * e + (1 - d) * p for e, p in zip(expected, params(t))]
    ema = t.ema_state_dict()
    for (name, _), e in zip(t.energy.named_parameters(), expected):
        torch.testing.assert_close(ema[name], e, rtol=0, atol=1e-6)


def test_lr_schedules_follow_their_formulas(host):
    cosine = LRSchedule({"name": "cosine", "warmup": 2, "min_factor": 0.1}, steps=10)
    assert [cosine(i) for i in (0, 1)] == [0.5, 1.0]
    assert cosine(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    warmup = LRSchedule({"name": "linear-warmup", "warmup": 4}, steps=10)
    assert [warmup(i) for i in (0, 3, 9)] == [0.25, 1.0, 1.0]
    assert LRSchedule("constant", steps=10)(5) == 1.0
    t = trainer(
        host,
        Scripted(),
        optimizer={"name": "sgd", "lr": 0.2},
        lr_schedule={"name": "cosine", "warmup": 2, "min_factor": 0.1},
    )
    assert [r["lr"] for r in t.fit()] == [
        0.2 * cosine.__class__({"name": "cosine", "warmup": 2, "min_factor": 0.1}, steps=6)(i)
        for i in range(6)
    ]


def test_tensor_data_visits_every_row_once_per_epoch(host):
    data = torch.arange(24.0).reshape(12, 2)
    objective = Scripted()
    trainer(host, objective, data=data, batch_size=4, steps=6).fit()
    rows = [b[:, 0].tolist() for b in objective.batches]
    for epoch in (rows[:3], rows[3:]):
        assert sorted(v for batch in epoch for v in batch) == list(range(0, 24, 2))
    assert rows[:3] != rows[3:]  # a new permutation per epoch


def test_metrics_are_means_over_the_logging_interval_and_go_to_the_metrics_file(host, tmp_path):
    every = trainer(host, log_every=1).fit()
    t = trainer(host, log_every=4, metrics_file=tmp_path / "m.jsonl")
    records = t.fit()
    assert [r["step"] for r in records] == [4, 6]
    assert records[0]["loss"] == pytest.approx(sum(r["loss"] for r in every[:4]) / 4)
    assert records[1]["energy_gap"] == pytest.approx(sum(r["energy_gap"] for r in every[4:]) / 2)
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records


def test_progress_bar_shows_loss_and_objective_metrics(host, capsys):
    trainer(host, progress=True, log_every=2).fit()
    err = capsys.readouterr().err
    assert "6/6" in err and "loss=" in err and "energy_gap=" in err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer ≥ 1, got 0"),
        ({"steps": -1}, "steps must be an integer ≥ 0"),
        ({"ema": 1.5}, "ema must be a decay in (0, 1)"),
        ({"grad_clip": 0}, "grad_clip must be a number > 0"),
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm'; did you mean 'adam'?"),
        ({"optimizer": {"name": "adam", "lrr": 1}}, "did you mean 'lr'?"),
        ({"optimizer": {"name": "sgd", "lr": -1}}, "Invalid learning rate"),
        ({"lr_schedule": {"name": "cosine", "warmpu": 1}}, "did you mean 'warmup'?"),
        ({"lr_schedule": "cosin"}, "unknown lr_schedule 'cosin'"),
        ({"checkpoint_every": 5}, "checkpoint_every needs a checkpoint_dir"),
        ({"data": [1, 2]}, "data must be an ebmflow Dataset"),
        ({"data": torch.zeros(3, 2)}, "at least batch_size = 32 rows"),
        ({"device": "gpu:0"}, "not a torch device"),
    ],
)
def test_bad_arguments_name_the_argument_and_what_is_accepted(host, kwargs, message):
    with pytest.raises(ebmflow.ConfigError) as info:
        trainer(host, **kwargs)
    assert message in str(info.value)


def test_checkpoints_need_a_registered_energy(host, tmp_path):
    class Adhoc(ebmflow.Energy):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def forward(self, x, sigma=None):
            return (x * self.w).sum(-1)

    with pytest.raises(ebmflow.ConfigError, match="checkpoints need a registered energy"):
        Trainer(
            Adhoc(),
            Scripted(),
            torch.zeros(64, 2),
            host=host,
            batch_size=8,
            checkpoint_dir=tmp_path,
        )
    Trainer(
        Adhoc(), Scripted(), torch.zeros(64, 2), host=host, batch_size=8, steps=2, progress=False
    ).fit()  # without checkpoints it trains


def test_resuming_from_a_plain_energy_checkpoint_is_refused(host, tmp_path):
    ebmflow.save(mlp(host), tmp_path / "plain", host=host)
    with pytest.raises(ebmflow.CheckpointError, match="holds no training state"):
        trainer(host).load_checkpoint(tmp_path / "plain")


@pytest.mark.slow
def test_compiled_energy_trains_like_the_eager_one(host):
    try:
        probe = torch.compile(lambda x: x.sin() + 1)
        probe(torch.zeros(3))
    except Exception as exc:  # no C compiler, unsupported Python, ...
        pytest.skip(f"torch.compile unavailable here: {exc}")
    eager = trainer(host, Scripted(), steps=3)
    compiled = trainer(host, Scripted(), steps=3, compile=True)
    he, hc = eager.fit(), compiled.fit()
    for a, b in zip(he, hc):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    for p, q in zip(params(eager), params(compiled)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
