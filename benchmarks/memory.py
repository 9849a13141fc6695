"""Peak training memory of the model families' default configs (``benchmarks/bench_memory.py``): the peak a training
run adds on top of the loaded model and data."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from lightning_gen.app.runtime import tune_host
from throughput import ReplayBatches, build_from_config, fixed_batches


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _state_bytes(model: torch.nn.Module, optimizers) -> dict[str, int]:
    """Bytes of the parameters, their gradients and the optimizers' state tensors (what lives between steps)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    opt = sum(t.numel() * t.element_size() for o in optimizers for st in o.state.values() for t in st.values()
              if isinstance(t, Tensor))
    return {"param_bytes": params, "grad_bytes": grads, "optimizer_bytes": opt}


def peak_memory(config: str | Path, extra: list[str] = (), *, steps: int = 10, accelerator: str = "cpu",
                precision: str = "32-true") -> dict:
    """Peak memory of ``steps`` Lightning training steps of ``config`` at its batch size.

    On a GPU: ``torch.cuda.max_memory_allocated`` over the run (tensors only, as PyTorch reports it). On the CPU:
    the growth of the process's peak resident set over the run (Linux: the peak is reset just before ``fit`` and
    the allocator's free memory is returned first), so it counts what training adds to the loaded model and
    batches, allocator slack included. Call it in a fresh process per config (``benchmarks/bench_memory.py`` does):
    memory freed by an earlier run in the same process would be reused and hide part of the peak.
    """
    tune_host()
    model, datamodule = build_from_config(config, extra)
    batches = fixed_batches(datamodule, steps)
    cuda = accelerator in ("gpu", "cuda")
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    gc.collect()
    if cuda:
        model.cuda()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        if not sys.platform.startswith("linux"):
            raise RuntimeError("CPU peak memory is read from /proc (Linux only); measure on a GPU with accelerator='gpu'")
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set (VmHWM) to the current one
        base = _proc_status_kb("VmRSS") * 1024
    trainer.fit(model, train_dataloaders=ReplayBatches(batches))
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _proc_status_kb("VmHWM") * 1024
    return {"config": str(config), "model": type(model).__name__, "params": sum(p.numel() for p in model.parameters()),
            "batch_size": batches[0][0].shape[0], "device": "cuda" if cuda else "cpu", "precision": precision,
            "base_bytes": base, "peak_bytes": peak, "training_peak_bytes": peak - base,
            **_state_bytes(model, trainer.optimizers)}
