"""Everything that hooks into the Trainer, one module per concern: :mod:`~lightning_gen.callbacks.sampling` (grids,
pictures, sample metrics), :mod:`~lightning_gen.callbacks.preemption` (checkpoint and stop on a scheduler's
signal), :mod:`~lightning_gen.callbacks.training` (compilation, memory format, progress bar, wall clock, why
training stopped). Configs name them as ``lightning_gen.callbacks.<Class>``."""

from lightning_gen.callbacks.preemption import PreemptionCheckpoint
from lightning_gen.callbacks.sampling import SampleGrid, SampleMetrics, VAEPictures
from lightning_gen.callbacks.training import (ChannelsLast, Compile, StopReason, ThrottledProgressBar,
                                              ValidationSummary, WallClock, compile_children, latest_checkpoint)

__all__ = ["ChannelsLast", "Compile", "PreemptionCheckpoint", "SampleGrid", "SampleMetrics", "StopReason",
           "ThrottledProgressBar", "VAEPictures", "ValidationSummary", "WallClock", "compile_children", "latest_checkpoint"]
