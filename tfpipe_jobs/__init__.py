"""tfpipe job code (jobs environment)."""
