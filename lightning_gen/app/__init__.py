"""Everything that starts from a command line or a path on disk: the CLI, benchmark orchestration, sampling,
pictures and probes of a checkpoint, curves, and the demo (the speed and memory benches are in benchmarks/, outside
the package). Nothing below imports this package.
"""
