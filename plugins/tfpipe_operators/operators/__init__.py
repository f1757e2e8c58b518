"""Operators: each runs one tfpipe job command somewhere."""
