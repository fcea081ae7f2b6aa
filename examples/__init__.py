"""The sample pairs and the script that rebuilds them (``python examples/make_pairs.py``)."""
