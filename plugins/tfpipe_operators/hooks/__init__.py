"""Hooks: thin wrappers around the clients tfpipe talks to."""
