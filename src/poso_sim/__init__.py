"""poso_sim: Proof-of-Solution consensus for energy dispatch, simulated end to end."""

__version__ = "0.1.0"
