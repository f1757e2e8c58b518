"""Sensors: wait for the warehouse before a run starts."""
