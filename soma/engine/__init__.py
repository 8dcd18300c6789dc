"""soma.engine."""
