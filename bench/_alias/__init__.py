"""``bench``: the name ``python -m bench`` runs, installed beside ``sepgconv_bench``.

From a checkout, ``bench`` is the folder ``bench/`` itself (the suite). An
installed sepgconv ships the suite as ``sepgconv_bench`` (a name no other
distribution uses) and this two-file package as ``bench``, so that
``python -m bench …`` works anywhere; it only forwards to
``sepgconv_bench.cli``. If another distribution also installs a top-level
``bench``, use ``sepgconv-bench …`` or ``python -m sepgconv_bench …``.
"""
