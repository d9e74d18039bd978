"""Benchmark and profiling suite for sepgconv (``python -m bench``).

The rooms, in the order a result flows through them (imports point down this
list, never up; ``tests/test_bench_layout.py`` checks it):

* ``commands/`` — one thin module per CLI verb (``run``, ``report``,
  ``compare``, ``profile``, ``models``): arguments, exit codes, printing.
* ``pipeline/`` — whole jobs: a sweep (``run``), one shape (``driver``), the
  paper's models (``models``), the per-operator profile (``profiler``).
* ``report/`` — how results are shown: the data behind each plot (``data``),
  the plots (``plots``), the README (``markdown``), the entry (``build``).
* ``judge/`` — how results are judged: statistics (``stats``), reading runs
  (``runs``), regression verdicts (``compare``) and their rendering (``render``).
* ``store/`` — how results are kept: the one result record (``record``), the
  results folder (``results``: CSV, JSONL, env.json), pytest-benchmark's JSON
  (``benchmark_json``).
* ``sweep/`` — what is swept: shapes and cases (``shapes``), named profiles
  and the implementations (``profiles``), the modules timed and their
  correctness checks (``subject``, ``subjects``, ``peers``), the memory guard
  (``guard``).
* ``measure/`` — how it is measured: timing (``timing``), memory (``memory``),
  MACs (``macs``), the machine (``env``).

Where to add things: a metric is a field of :class:`bench.store.record.Result`
filled in ``pipeline/driver.py``; a plot is a function in ``report/data.py``
plus one in ``report/plots.py``; a regression rule lives in ``judge/``; a peer
library is a builder in ``sweep/peers.py``; a new CLI verb is a module in
``commands/`` and a line in ``cli.py``.
"""
