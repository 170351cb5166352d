"""Training stages: each is a function with a config that registers what it writes."""
