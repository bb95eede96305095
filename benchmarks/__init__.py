"""llmcache's benchmarks: one command (``python -m benchmarks``) produces ``RESULTS.md``.

Modules: :mod:`~benchmarks.run` (the command), :mod:`~benchmarks.servers` (servers on free
loopback ports), :mod:`~benchmarks.upstream` (the simulator in a child process),
:mod:`~benchmarks.workload` (the typical request), :mod:`~benchmarks.timing` (paired,
interleaved timing), :mod:`~benchmarks.floors` (what a hit costs at least),
:mod:`~benchmarks.hits`, :mod:`~benchmarks.misses`, :mod:`~benchmarks.batching`,
:mod:`~benchmarks.fill` and :mod:`~benchmarks.scale`, :mod:`~benchmarks.sizes`,
:mod:`~benchmarks.peers`, :mod:`~benchmarks.machine`, :mod:`~benchmarks.report` and
:mod:`~benchmarks.chart`.
"""
