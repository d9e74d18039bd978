"""How it is measured: timing, memory, MACs and the machine (no knowledge of the sweep)."""
