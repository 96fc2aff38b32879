"""Speed measurement behind benchmark.py: timing, arithmetic, peers and the markdown report."""
