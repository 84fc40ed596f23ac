"""Benchmarks of the training methods: ``lightning-snn bench`` and the harness the ``benchmarks/`` scripts share.

:mod:`lightning_snn.bench.harness` holds the device description, the interleaved timing loop, the step-memory
accounting (CUDA allocator statistics, or on CPU profiler memory events plus a saved-for-backward tally) and
the JSON writer of ARCHITECTURE.md "Benchmark results".
"""
