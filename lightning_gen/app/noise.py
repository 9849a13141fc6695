"""Third-party messages that say nothing to a user of this suite, silenced by the CLI (and only these)."""

from __future__ import annotations

import logging
import re
import warnings

from lightning.pytorch.utilities.warnings import PossibleUserWarning

#: (category, regex the message starts with). A warning category filters :mod:`warnings`; ``logging.LogRecord``
#: filters Lightning's info log.
KNOWN_NOISE: tuple[tuple[type, str], ...] = (
    # The CSV logger is the intended default; the TensorBoard one needs a package the suite does not install.
    (UserWarning, r"Starting from v1\.9\.0, `tensorboardX` has been removed as a dependency"),
    (logging.LogRecord, r"💡 Tip: For seamless cloud logging and experiment tracking, try installing \[litlogger\]"),
    # Lightning's own use of a torch name deprecated in torch 2.10, once per fit and per test.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # The data modules hold uint8 tensors in memory and batch with one index operation: workers only add IPC.
    (PossibleUserWarning, r"The '\w+_dataloader' does not have many workers"),
)


class _NoiseFilter(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(p.match(record.getMessage()) for p in self.patterns)


def silence_known_noise() -> None:
    """Filter the messages of :data:`KNOWN_NOISE` out of this process (and nothing else)."""
    log_patterns = []
    for category, pattern in KNOWN_NOISE:
        if category is logging.LogRecord:
            log_patterns.append(pattern)
        else:
            warnings.filterwarnings("ignore", message=pattern, category=category)
    noise = _NoiseFilter(log_patterns)
    # Handler filters see the records of child loggers too (Lightning logs through its modules' loggers); the root
    # logger's handlers print them where an application configured logging.
    for name in ("lightning.pytorch", "lightning.fabric", None):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoiseFilter) for f in handler.filters):
                handler.addFilter(noise)
