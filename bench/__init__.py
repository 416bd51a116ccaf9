"""``make bench``: speed, size and memory of the product against the notebook way."""
