"""Example scripts: each has a frozen `Config` dataclass (its flags) and `run(config)`."""
