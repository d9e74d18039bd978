"""Device slugs: one spelling for run folders (``results/<slug>/``) and history files.

Torch-free, so ``bench compare`` and ``bench history`` stay light.
"""

from __future__ import annotations

import re


def slugify(text: str) -> str:
    """Lowercase, every run of non-alphanumerics → ``-``, ``(R)``/``(TM)``/``(C)`` and a
    trailing ``CPU @ 2.90GHz`` dropped: ``"Intel(R) Xeon(R) CPU @ 2.9GHz"`` ->
    ``"intel-xeon"``. The one spelling of device slugs."""
    text = re.sub(r"\((r|tm|c)\)", "", str(text), flags=re.IGNORECASE)
    text = re.sub(r"(\s+cpu)?\s*@.*$", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"
