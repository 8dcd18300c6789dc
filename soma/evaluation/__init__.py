"""soma.evaluation."""
