"""Training throughput of the model families' default configs (``benchmarks/bench_train.py``,
``benchmarks/bench_optimizer.py``).

Lightning's fit loop against a plain PyTorch loop over the same nets, batches and optimizer. Both sides start from
the same seeded model built from a config, draw the same in-memory batches and run the model's own loss; the plain
loop has no Trainer, no logging, no callbacks. The ratio ``lightning images/s / plain images/s`` is Lightning's
overhead as a user pays it (1.0: none).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from lightning_gen.models.base import GenerativeModule

#: One default config per family, at the data size the family is usually benchmarked on.
FAMILY_CONFIGS = {
    "baseline": "configs/fvsbn_digits.yaml",
    "autoregressive (PixelCNN)": "configs/pixelcnn_binarized_mnist.yaml",
    "autoregressive (Gated PixelCNN)": "configs/gated_pixelcnn_binarized_mnist.yaml",
    "autoregressive (Row LSTM)": "configs/row_lstm_binarized_mnist.yaml",
    "latent (VAE)": "configs/vae_binarized_mnist.yaml",
    "latent (AE)": "configs/ae_mnist.yaml",
    "gan (DCGAN)": "configs/dcgan_mnist.yaml",
    "flow (RealNVP)": "configs/realnvp_mnist.yaml",
    "boltzmann (RBM)": "configs/rbm_binarized_mnist.yaml",
    "diffusion (DDPM)": "configs/ddpm_mnist.yaml",
}


def build_from_config(config: str | Path, extra: list[str] = ()) -> tuple[GenerativeModule, L.LightningDataModule]:
    """The model and data module a config describes, exactly as ``fit`` would build them (nothing is run)."""
    from lightning_gen.app.trainer_cli import GenCLI
    from lightning_gen.data.base import ImageDataModule

    cli = GenCLI(GenerativeModule, ImageDataModule, subclass_mode_model=True, subclass_mode_data=True,
                 auto_configure_optimizers=False, run=False, save_config_callback=None,
                 args=["--config", str(config), "--trainer.logger", "false", *extra])
    return cli.model, cli.datamodule


def fixed_batches(datamodule: L.LightningDataModule, n: int) -> list[tuple[Tensor, Tensor]]:
    """The first ``n`` training batches, materialised once so both loops see identical data at no loader cost."""
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = []
    while len(batches) < n:
        for batch in datamodule.train_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
    return batches


def synthetic_batches(datamodule, n: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``n`` batches of random images with the data module's shape, levels and batch size: throughput needs no
    dataset (on a GPU machine without CelebA, say). Speed does not depend on pixel values."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = datamodule.image_shape
    levels, classes = datamodule.num_levels, datamodule.num_classes
    batches = []
    for _ in range(n):
        x = torch.randint(0, levels, (datamodule.batch_size, c, h, w), generator=g)
        x = (x * 255 // (levels - 1)).to(torch.uint8)  # level index -> 0..255, as the data modules store images
        y = torch.randint(0, max(classes, 1), (datamodule.batch_size,), generator=g)
        batches.append((x, y))
    return batches


def _autocast(device: torch.device, precision: str):
    """The forward-pass context Lightning's precision plugin uses for ``precision``."""
    if precision in ("32-true", "32", 32):
        return contextlib.nullcontext()
    if precision in ("bf16-mixed", "16-mixed"):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    raise ValueError(f"unknown precision {precision!r}; expected one of 32-true, bf16-mixed, 16-mixed")


def optimizers_of(model: GenerativeModule) -> list[torch.optim.Optimizer]:
    """The optimizers of ``model.configure_optimizers()`` in any of Lightning's return forms: one optimizer, a
    ``{"optimizer": ..., "lr_scheduler": ...}`` dict, a list of either, or ``(optimizers, schedulers)``. Schedulers
    are left out: the timed steps lie inside one epoch, and the configs step theirs once per epoch."""
    def flatten(out) -> list:
        if isinstance(out, torch.optim.Optimizer):
            return [out]
        if isinstance(out, dict):
            return [out["optimizer"]]
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], (list, tuple)):
            return flatten(list(out[0]))  # (optimizers, schedulers)
        if isinstance(out, (list, tuple)):
            return [opt for item in out for opt in flatten(item)]
        raise TypeError(f"configure_optimizers returned {type(out).__name__}; expected Lightning's forms")

    return flatten(model.configure_optimizers())


def plain_step(model: GenerativeModule, precision: str = "32-true") -> Callable[[tuple[Tensor, Tensor], int], None]:
    """One optimisation step of ``model`` written as a plain PyTorch loop would write it (on the model's device)."""
    device = model.device
    if precision == "16-mixed":
        raise ValueError("the plain loop has no gradient scaler; compare with bf16-mixed or 32-true")
    if model.automatic_optimization:
        (optimizer,) = optimizers_of(model)

        def step(batch, i):
            with _autocast(device, precision):  # forward only, as Lightning's precision plugin does
                loss = model.training_step(batch, i)  # self.log is a no-op without a Trainer
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    # The GAN's manual loop through its public steps, without Lightning: one D step per batch, one G step every k-th.
    g_opt, d_opt = optimizers_of(model)
    gen = torch.Generator(device=device).manual_seed(0)

    def gan_step(batch, i):
        with _autocast(device, precision):  # Lightning wraps a manual training_step, backward included
            x, y = batch
            real = model.to_model_space(x)
            labels = y if model.conditional else None
            d_loss = model.discriminator_step(real, labels, gen)["loss"]
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            model.clip_discriminator()
            if (i + 1) % model.d_steps_per_g_step == 0:
                g_loss = model.generator_step(real.shape[0], labels, gen)
                g_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                g_opt.step()
                model.update_ema()

    return gan_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to(batches, device: torch.device):
    return [tuple(t.to(device) for t in b) for b in batches]


def time_plain(model: GenerativeModule, batches, warmup: int, *, device: str = "cpu", precision: str = "32-true",
               compile: bool = False) -> float:
    """Images/s of the plain loop over ``batches`` after ``warmup`` untimed steps."""
    device = torch.device(device)
    model.to(device).train()
    if compile:
        from lightning_gen.callbacks import compile_children

        compile_children(model)
    batches = _to(batches, device)
    step = plain_step(model, precision)
    for i, batch in enumerate(batches[:warmup]):
        step(batch, i)
    images = sum(b[0].shape[0] for b in batches[warmup:])
    _sync(device)
    start = time.perf_counter()
    for i, batch in enumerate(batches[warmup:], start=warmup):
        step(batch, i)
    _sync(device)
    return images / (time.perf_counter() - start)


class ReplayBatches:
    """An iterable over fixed batches (a bare list would be read by Lightning as a list of data loaders)."""

    def __init__(self, batches) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _StepClock(L.Callback):
    """Wall time from the first timed batch's start to the last batch's end, inside Lightning's loop (the device
    is synchronised at both ends, so queued GPU work is counted)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.first, self.start, self.end, self.images = warmup, None, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.first = time.perf_counter()
        if batch_idx == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.images += batch[0].shape[0]
            if batch_idx == trainer.num_training_batches - 1:
                _sync(pl_module.device)
                self.end = time.perf_counter()


def time_lightning(model: GenerativeModule, batches, warmup: int, log_dir: Path, log_every_n_steps: int = 50, *,
                   device: str = "cpu", precision: str = "32-true", compile: bool = False) -> float:
    """Images/s of ``Trainer.fit`` over the same batches, with what ``fit`` adds per step: CSV logging at the
    configs' default rate and the CLI's progress bar (drawn into /dev/null)."""
    return run_lightning(model, batches, warmup, log_dir, log_every_n_steps, device=device, precision=precision,
                         compile=compile)["img_s"]


def run_lightning(model: GenerativeModule, batches, warmup: int, log_dir: Path, log_every_n_steps: int = 50, *,
                  device: str = "cpu", precision: str = "32-true", compile: bool = False) -> dict[str, float]:
    """:func:`time_lightning`'s run: ``img_s`` after the warm-up, and ``warmup_s``, the wall time of the ``warmup``
    untimed steps (where compilation happens)."""
    from lightning.pytorch.loggers import CSVLogger

    from lightning_gen.callbacks import Compile, ThrottledProgressBar

    clock = _StepClock(warmup)
    callbacks = [clock, ThrottledProgressBar()] + ([Compile()] if compile else [])
    trainer = L.Trainer(accelerator="gpu" if torch.device(device).type == "cuda" else "cpu", devices=1,
                        max_epochs=1, precision=precision, logger=CSVLogger(log_dir),
                        log_every_n_steps=log_every_n_steps, enable_checkpointing=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=callbacks, num_sanity_val_steps=0)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        trainer.fit(model, train_dataloaders=ReplayBatches(batches))
    return {"img_s": clock.images / (clock.end - clock.start), "warmup_s": clock.start - clock.first}


#: Dense bf16 tensor-core peaks (TFLOP/s) by GPU name, from the vendors' data sheets, for MFU.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "H200": 989.4, "A100": 312.0, "L40S": 362.05, "A10G": 70.0, "L4": 121.0}


def peak_tflops(device: str, precision: str) -> float | None:
    """The accelerator's dense peak for ``precision`` if known (bf16 on the GPUs above), else None."""
    if torch.device(device).type != "cuda" or not precision.startswith("bf16"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if all(part in name for part in key.split()):
            return tflops
    return None


def flops_per_step(model: GenerativeModule, batches, *, device: str = "cpu", precision: str = "32-true") -> float:
    """Model FLOPs of one training step (forward and backward, the matmuls and convolutions that MFU counts),
    averaged over a generator period for GANs, counted by ``torch.utils.flop_counter`` on a copy of ``model``."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).to(device).train()
    period = 1 if model.automatic_optimization else model.d_steps_per_g_step
    step = plain_step(model, precision)
    with FlopCounterMode(display=False) as counter:
        for i, batch in enumerate(_to(batches[:period], torch.device(device))):
            step(batch, i)
    return counter.get_total_flops() / period


def timing_batches(model: GenerativeModule, datamodule, *, steps: int, warmup: int, min_seconds: float = 1.0,
                   synthetic: bool = False, **options) -> list[tuple[Tensor, Tensor]]:
    """``warmup`` untimed batches, then at least ``steps`` timed ones covering about ``min_seconds`` of the plain
    loop (a fast model repeats its batches: 20 steps of a 3 ms model are too short to time)."""
    batches = synthetic_batches(datamodule, warmup + steps) if synthetic else fixed_batches(datamodule, warmup + steps)
    if min_seconds > 0:
        pilot = time_plain(copy.deepcopy(model), batches, warmup, **options)
        needed = math.ceil(min_seconds * pilot / batches[0][0].shape[0])
        if needed > steps:
            timed = batches[warmup:]
            batches = batches[:warmup] + [timed[i % len(timed)] for i in range(needed)]
    return batches


def compare(config: str | Path, *, steps: int = 20, warmup: int = 3, repeats: int = 2, log_dir: Path,
            device: str = "cpu", precision: str = "32-true", compile: bool = False, synthetic: bool = False,
            min_seconds: float = 1.0, extra: list[str] = ()) -> dict:
    """Best-of-``repeats`` images/s of both loops on one config, alternating so drift hits both alike, with the
    model FLOPs of a step (and MFU where the accelerator's peak is known). Each timed window covers at least
    ``steps`` steps and about ``min_seconds`` of the plain loop (20 steps of a 3 ms model are too short to time)."""
    model, datamodule = build_from_config(config, list(extra))
    options = dict(device=device, precision=precision, compile=compile)
    batches = timing_batches(model, datamodule, steps=steps, warmup=warmup, min_seconds=min_seconds,
                             synthetic=synthetic, **options)
    batch_size = batches[0][0].shape[0]
    plain, lightning = [], []
    for r in range(repeats):  # fresh copies of the untrained model: a fitted one stays attached to its Trainer
        plain.append(time_plain(copy.deepcopy(model), batches, warmup, **options))
        lightning.append(time_lightning(copy.deepcopy(model), batches, warmup, log_dir / f"r{r}", **options))
    flops = flops_per_step(model, batches, device=device, precision=precision)
    tflops = flops * max(lightning) / batch_size / 1e12
    peak = peak_tflops(device, precision)
    return {"config": str(config), "model": type(model).__name__, "params": sum(p.numel() for p in model.parameters()),
            "batch_size": batch_size, "plain_img_s": max(plain), "lightning_img_s": max(lightning),
            "ratio": max(lightning) / max(plain), "timed_steps": len(batches) - warmup, "gflops_per_step": flops / 1e9, "lightning_tflops": tflops,
            "mfu": tflops / peak if peak else None, **options}


class _AlmostEmpty(L.LightningModule):
    """One ``Linear(784, 1)`` on batches of 100: a training step with almost no model work, so what a step costs
    in Lightning's loop beyond the plain loop is the loop's own per-step cost."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(784, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), fused=True)


def lightning_floor(log_dir: Path, *, steps: int = 2000, warmup: int = 3, repeats: int = 3) -> dict[str, float]:
    """Milliseconds a step of :class:`_AlmostEmpty` takes in the plain loop and in ``fit`` (same logger and progress
    bar as :func:`run_lightning`), best of ``repeats`` alternated runs, and ``extra_ms``, their difference: the
    least Lightning adds to any step on this machine. It is a floor: after a real model's step has been through the
    caches, the same Python runs slower. A step reaches a ratio of 0.95 only if it takes at least
    ``min_step_ms_for_095`` (19 * extra_ms) in the plain loop; ``model`` says what was timed."""
    generator = torch.Generator().manual_seed(0)
    batch_size = 100
    distinct = [(torch.rand(batch_size, 784, generator=generator), torch.zeros(batch_size)) for _ in range(20)]
    batches = [distinct[i % len(distinct)] for i in range(warmup + steps)]
    torch.manual_seed(0)
    model = _AlmostEmpty()
    plain, lightning = [], []
    for r in range(repeats):
        plain.append(batch_size / time_plain(copy.deepcopy(model), batches, warmup))
        lightning.append(batch_size / time_lightning(copy.deepcopy(model), batches, warmup, log_dir / f"floor{r}"))
    plain_ms, lightning_ms = 1e3 * min(plain), 1e3 * min(lightning)
    extra_ms = lightning_ms - plain_ms
    return {"model": f"Linear(784, 1), batch {batch_size}", "plain_ms": plain_ms, "lightning_ms": lightning_ms,
            "extra_ms": extra_ms, "min_step_ms_for_095": extra_ms * 0.95 / 0.05}
