"""sensor stage."""
