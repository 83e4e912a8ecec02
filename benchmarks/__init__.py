"""sdfuse benchmarks: backbone passes, per-image and per-pair costs, memory, cache size, precision
parity and the smoke end-to-end time. Run ``python -m benchmarks.run`` (or ``make bench``); the
results go to ``results/benchmark/benchmark.{json,md}`` (see ``benchmarks/README.md``).
Not part of the test suite."""
