"""What the job command offers besides the steps: the synthetic sample data for the demo and the tests."""
