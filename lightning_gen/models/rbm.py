"""The binary restricted Boltzmann machine, trained by contrastive divergence (CD-k) or persistent CD, with an
annealed-importance-sampling (AIS) estimate of its partition function for the test log-likelihood.

[1] Hinton 2002, *Training Products of Experts by Minimizing Contrastive Divergence*, Neural Computation 14 (CD-k).
[2] Tieleman 2008, *Training Restricted Boltzmann Machines using Approximations to the Likelihood Gradient*, ICML
    (persistent CD).
[3] Salakhutdinov & Murray 2008, *On the Quantitative Analysis of Deep Belief Networks*, ICML (AIS from the
    base-rate RBM; 500 hidden units and CD-25 on statically binarized MNIST).

The energy, free energy and Gibbs steps are :mod:`lightning_gen.nn.rbm`; AIS is :mod:`lightning_gen.nn.ais`.

Training: with the negative samples ``v~`` drawn by ``k`` Gibbs sweeps (from the data for CD-k, from persistent
chains for PCD) and detached, the surrogate loss ``mean F(v_data) - mean F(v~)`` has exactly the CD gradient
``-<v h^T>_data + <v h^T>_model`` (hidden probabilities, not samples) under automatic optimization. It is not a
likelihood: it is logged as ``train/cd_loss``. Weight decay applies to the weights only, not the biases ([3] and
Hinton's guide); momentum and the learning rate come from the optimizer config.

Likelihood: ``log p(x) = -F(x) - log Z``. ``log Z`` is exact (enumeration) when the smaller layer has at most
``enumerate_up_to`` units, else an AIS estimate: ``Estimate.k`` runs (default ``ais_runs``) through
``ais_temperatures`` inverse temperatures, seeded by ``Estimate.seed``, from the base-rate RBM whose visible biases
are the logits of the training images' pixel means (counted as the model trains, smoothed by one pseudo-count
each way). An unbiased ``Z`` estimate makes ``log Z`` biased low, so the AIS log-likelihood is **biased high in
expectation** (the NLL optimistic). One ``log Z`` serves every image of an evaluation: it is cached per
(weights, settings, seed). Validation uses a small budget (``val_ais_runs`` x ``val_ais_temperatures``), the test
step and the benchmark the full one.

Deliberate differences from [3]: no learning-rate or CD-k schedule inside the model (configs choose optimizer
and scheduler); non-binary data is refused rather than binarized (a thresholded data set is another data set,
whose NLL would not compare: the binarized data modules exist).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lightning_gen import compat
from lightning_gen.models.base import Estimate, LikelihoodModule
from lightning_gen.nn.ais import SCHEDULES, AISResult, ais_log_partition
from lightning_gen.nn.pixels import from_levels, to_levels
from lightning_gen.nn.rbm import bernoulli, free_energy, gibbs_chain, log_partition_exact


class RBM(LikelihoodModule):
    """A binary RBM over the image's sub-pixels (flattened; no spatial structure) with ``hidden_size`` hidden units.

    Logged: ``train/cd_loss``; ``{val,test}/nll_nats`` and ``nll_bpd`` (``-log p`` with the stage's AIS budget),
    ``{val,test}/log_z`` and ``log_z_se`` (the spread over AIS runs; 0 where ``log Z`` is exact).

    Args:
        image_shape, num_levels, num_classes, optimizer: see :class:`~lightning_gen.models.base.GenerativeModule`.
        hidden_size: hidden units (500 in [3]).
        k: Gibbs sweeps per negative sample (CD-k; 25 in [3]'s best RBM).
        persistent: persistent CD [2]: the negative chains continue from step to step (a buffer, so they survive
            a checkpoint) instead of restarting at the data.
        persistent_chains: how many persistent chains.
        init_std: standard deviation of the initial weights (biases start at 0).
        sample_steps: Gibbs sweeps of :meth:`sample`, from the base-rate model's draw.
        ais_runs, ais_temperatures, ais_schedule: the test AIS (``"paper"``: [3]'s spacing; ``"linear"``).
        val_ais_runs, val_ais_temperatures: the validation AIS (a cheap monitor).
        enumerate_up_to: ``log Z`` is exact, by enumeration, when the smaller layer has at most this many units.
        lr_scheduler: an ``LRSchedulerCallable`` stepped once per epoch, or None (a constant learning rate).
    """

    family: ClassVar[str] = "boltzmann"
    likelihood_kind: ClassVar[str] = "ais"

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        num_levels: int = 2,
        num_classes: int = 0,
        optimizer: OptimizerCallable = torch.optim.SGD,
        *,
        hidden_size: int = 500,
        k: int = 1,
        persistent: bool = False,
        persistent_chains: int = 100,
        init_std: float = 0.01,
        sample_steps: int = 1000,
        ais_runs: int = 100,
        ais_temperatures: int = 14500,
        ais_schedule: str = "paper",
        val_ais_runs: int = 16,
        val_ais_temperatures: int = 1000,
        enumerate_up_to: int = 16,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__(image_shape, num_levels, num_classes, optimizer)
        self.save_hyperparameters()
        self.lr_scheduler = lr_scheduler
        if self.num_levels != 2:
            raise ValueError(f"RBM models binary pixels (num_levels=2), got num_levels={self.num_levels}; train it on "
                             "binarized data: configs/data/digits_binary.yaml or binarized MNIST")
        for name, value in (("hidden_size", hidden_size), ("k", k), ("persistent_chains", persistent_chains),
                            ("ais_runs", ais_runs), ("val_ais_runs", val_ais_runs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if ais_temperatures < 2 or val_ais_temperatures < 2:
            raise ValueError(f"AIS needs at least 2 temperatures, got {ais_temperatures} and {val_ais_temperatures}")
        if ais_schedule not in SCHEDULES:
            raise ValueError(f"unknown ais_schedule {ais_schedule!r}; expected one of {SCHEDULES}")
        if sample_steps < 0 or enumerate_up_to < 0 or init_std < 0:
            raise ValueError("sample_steps, enumerate_up_to and init_std must be non-negative")
        self.hidden_size, self.k, self.persistent = int(hidden_size), int(k), bool(persistent)
        self.sample_steps, self.enumerate_up_to = int(sample_steps), int(enumerate_up_to)
        self.ais_runs, self.ais_temperatures, self.ais_schedule = int(ais_runs), int(ais_temperatures), ais_schedule
        self.val_ais_runs, self.val_ais_temperatures = int(val_ais_runs), int(val_ais_temperatures)
        d = self.num_dims
        self.W = nn.Parameter(torch.randn(d, self.hidden_size) * init_std)
        self.b = nn.Parameter(torch.zeros(d))
        self.c = nn.Parameter(torch.zeros(self.hidden_size))
        # The training images' pixel counts: the base-rate model of AIS and the start of sample()'s chains.
        self.register_buffer("visible_counts", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.float64))
        # PCD's negative chains: state a resumed run must continue from, so a buffer.
        self.register_buffer("chains", (torch.rand(int(persistent_chains) if persistent else 0, d) < 0.5).float())
        self._log_z: tuple[tuple, AISResult] | None = None  # (key, value): one log Z per weights and settings
        self._stage_log_z: AISResult | None = None  # the log Z of the evaluation under way, logged at its end

    # ---- the model ---------------------------------------------------------------------------------------------
    def visible(self, x: Tensor) -> Tensor:
        """uint8 images ``(N, C, H, W)`` -> 0/1 float visible vectors ``(N, D)`` (memory order)."""
        return to_levels(self.check_images(x), self.num_levels).flatten(1).to(self.W.dtype)

    def free_energy(self, x: Tensor) -> Tensor:
        """``F(x)`` of uint8 images: ``(N,)``, ``log p(x) = -F(x) - log Z``."""
        return free_energy(self.visible(x), self.W, self.b, self.c)

    def base_bias(self) -> Tensor:
        """The base-rate model's visible biases ``(D,)``: logits of the training pixel means, each smoothed by one
        pseudo-count of 0 and one of 1 (all 0 before any training)."""
        p = (self.visible_counts + 1) / (self.images_seen + 2)
        return torch.logit(p).to(self.W.dtype)

    def sampling_protocol(self) -> str:
        return f"Gibbs chain, {self.sample_steps} sweeps"

    def log_z_is_exact(self) -> bool:
        return min(self.num_dims, self.hidden_size) <= self.enumerate_up_to

    # ---- the likelihood --------------------------------------------------------------------------------------
    def resolve_estimate(self, estimate: Estimate | None = None) -> Estimate:
        estimate = estimate or Estimate()
        return Estimate(k=self.ais_runs if estimate.k is None else int(estimate.k), seed=estimate.seed,
                        chunk=estimate.chunk)

    @torch.no_grad()
    def log_partition(self, estimate: Estimate | None = None, *, temperatures: int | None = None) -> AISResult:
        """``log Z``: exact where :meth:`log_z_is_exact` (``runs = 0``, ``log_z_se = 0``), else the AIS estimate with
        ``estimate.k`` runs (default ``ais_runs``) through ``temperatures`` (default ``ais_temperatures``), seeded
        by ``estimate.seed`` (None: a fresh seed from the global RNG). Cached for the current weights, base rate
        and settings, so an evaluation anneals once, not once per batch."""
        estimate = self.resolve_estimate(estimate)
        temperatures = self.ais_temperatures if temperatures is None else int(temperatures)
        exact = self.log_z_is_exact()
        seed = estimate.seed
        if seed is None and not exact:
            seed = int(torch.randint(0, 2**62, ()).item())
        # Tensor._version counts in-place changes (optimizer steps, load_state_dict): the key changes with the weights.
        state = tuple((t.data_ptr(), t._version) for t in (self.W, self.b, self.c, self.visible_counts, self.images_seen))
        key = (state, exact) if exact else (state, estimate.k, temperatures, self.ais_schedule, seed)
        if self._log_z is not None and self._log_z[0] == key:
            return self._log_z[1]
        if exact:
            value = log_partition_exact(self.W, self.b, self.c).item()
            result = AISResult(value, 0.0, 0, 0, "enumeration", torch.zeros(0))
        else:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            result = ais_log_partition(self.W, self.b, self.c, self.base_bias(), runs=estimate.k,
                                       temperatures=temperatures, schedule=self.ais_schedule, generator=generator)
        self._log_z = (key, result)
        return result

    @torch.no_grad()
    def log_prob(self, x: Tensor, labels: Tensor | None = None, *, estimate: Estimate | None = None) -> Tensor:
        """``-F(x) - log Z`` in nats, ``(N,)`` float64; ``log Z`` from :meth:`log_partition` (an AIS estimate, so
        biased high in expectation, unless the model is small enough to enumerate). ``labels`` are ignored."""
        return self._log_prob(x, self.log_partition(estimate))

    def _log_prob(self, x: Tensor, log_z: AISResult) -> Tensor:
        return -self.free_energy(x).double() - log_z.log_z

    def likelihood_protocol(self, estimate: Estimate | None = None) -> str:
        """Names the estimator, its settings and ``log Z`` with its spread over AIS runs, e.g. "ais (100 runs,
        14,500 temperatures, paper schedule, base-rate start; log Z = 451.20 ± 0.30 s.e. over runs; ...)"."""
        estimate = self.resolve_estimate(estimate)
        if self.log_z_is_exact():
            n = min(self.num_dims, self.hidden_size)
            return (f"ais kind, but log Z exact by enumeration over the 2^{n} states of the {n}-unit layer "
                    f"(log Z = {self.log_partition(estimate).log_z:.4f}; the model is small enough)")
        last = self._log_z[1] if self._log_z is not None else None
        if estimate.seed is None and last is not None and last.runs == estimate.k and last.temperatures == self.ais_temperatures:
            result = last  # the estimate the seedless evaluation just used
        else:
            result = self.log_partition(estimate)
        warning = "" if result.converged() else (
            f"; NOT CONVERGED: an effective {result.ess:.1f} of the {result.runs} runs carry the estimate, so the ± "
            "understates its error and log Z is likely too low (the NLL too good): anneal more slowly, e.g. lightning-gen "
            "test --config CONFIG --ckpt_path CKPT --model.init_args.ais_temperatures 50000")
        return (f"ais ({result.runs} runs, {result.temperatures:,} temperatures, {result.schedule} schedule, base-rate "
                f"start; log Z = {result.log_z:.2f} ± {result.log_z_se:.2f} s.e. over runs, effective sample size "
                f"{result.ess:.1f}; log p is biased high in expectation: the log of an unbiased Z estimate is biased "
                f"low{warning})")

    # ---- sampling ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels: Tensor | None = None) -> Tensor:
        """``sample_steps`` Gibbs sweeps from a draw of the base-rate model; the final visible state is a draw
        (0/255), not a mean."""
        self.check_labels(n, labels)
        v = bernoulli(torch.sigmoid(self.base_bias()).expand(n, -1), generator)
        v = gibbs_chain(v, self.W, self.b, self.c, self.sample_steps, generator)
        return from_levels(v.long().view(n, *self.image_shape), self.num_levels)

    # ---- Lightning ---------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, _ = batch
        v = self.visible(x)
        counts = v.sum(0).double()
        trainer = compat.attached_trainer(self)
        if trainer is not None and trainer.world_size > 1:  # one base rate on every rank
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        self.visible_counts += counts
        self.images_seen += x.shape[0] * (trainer.world_size if trainer is not None else 1)
        start = self.chains if self.persistent else v
        negative = gibbs_chain(start, self.W, self.b, self.c, self.k)
        if self.persistent:
            self.chains.copy_(negative)
        # Its gradient is CD's: the negative samples are constants.
        loss = free_energy(v, self.W, self.b, self.c).mean() - free_energy(negative, self.W, self.b, self.c).mean()
        if self.logs_this_step():
            self.log("train/cd_loss", loss.detach(), prog_bar=True, batch_size=x.shape[0])
        return loss

    def configure_optimizers(self):
        # Weight decay (from the optimizer config) on the weights only, as [3] and Hinton's guide do.
        return self.scheduled(self.optimizer([{"params": [self.W]}, {"params": [self.b, self.c], "weight_decay": 0.0}]))

    def eval_values(self, x: Tensor, y: Tensor, stage: str) -> dict[str, Tensor]:
        """``-log p`` with the stage's AIS budget, seed 0 (the benchmark's default seed, so the test step's
        figure is the benchmark's)."""
        if stage == "test":
            log_z = self.log_partition(Estimate(seed=0))
        else:
            log_z = self.log_partition(Estimate(k=self.val_ais_runs, seed=0), temperatures=self.val_ais_temperatures)
        self._stage_log_z = log_z
        return {"nll_nats": -self._log_prob(x, log_z)}

    def _log_eval(self, stage: str) -> None:
        super()._log_eval(stage)
        log_z = self._stage_log_z
        if log_z is not None:
            self.log(f"{stage}/log_z", log_z.log_z, sync_dist=True)
            self.log(f"{stage}/log_z_se", log_z.log_z_se if math.isfinite(log_z.log_z_se) else 0.0, sync_dist=True)
            if log_z.runs:
                self.log(f"{stage}/log_z_ess", log_z.ess, sync_dist=True)
