"""``python -m bench ab BASE HEAD``: base and head of the library measured in one job.

* :mod:`bench.ab.sides` — each side's source tree (a git ref checked out into a
  temporary worktree, or a directory given as is).
* :mod:`bench.ab.worker` — the long-lived process that imports one side's
  ``sepgconv`` and times what the parent asks, one round at a time.
* :mod:`bench.ab.session` — the parent: the shapes, the interleaved rounds of
  both workers, the two runs and the verdict (:func:`bench.judge.compare.compare_runs`).
"""
