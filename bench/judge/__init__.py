"""How results are judged: statistics, regression verdicts and their rendering (no torch)."""
