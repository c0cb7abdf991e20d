"""End-to-end recipes: commands that go from a data folder to a results table."""
