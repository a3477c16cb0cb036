"""memscan stage."""
