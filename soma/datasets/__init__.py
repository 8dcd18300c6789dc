"""soma.datasets."""
