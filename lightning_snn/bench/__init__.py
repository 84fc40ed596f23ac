"""Benchmarks of the training methods: ``lightning-snn bench`` and the harness the ``benchmarks/`` scripts share.

* :mod:`~lightning_snn.bench.harness`: device description, the interleaved timing loop, the step-memory
  accounting (CUDA allocator statistics, or on CPU profiler memory events plus a saved-for-backward tally),
  the JSON writer of ARCHITECTURE.md "Benchmark results", table and figure helpers, shared options;
* :mod:`~lightning_snn.bench.methods`: the method table (how each method builds and runs one training step
  on a given backbone) and the up-front checks of what a method cannot run;
* :mod:`~lightning_snn.bench.run`: the measurement loop, derived ratios, accuracy after a short run, the
  table, the PNG and the schema check;
* :mod:`~lightning_snn.bench.cli`: ``lightning-snn bench`` (its one argument parser, config resolution, data).
"""
