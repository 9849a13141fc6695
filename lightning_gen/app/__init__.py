"""Everything that starts from a command line or a path on disk: the CLI, benchmark orchestration, sampling,
pictures and probes of a checkpoint, the demo and the speed and memory benches. Nothing below imports this package.
"""
