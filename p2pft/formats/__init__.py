"""Torch-free formats shared by the daemon side (jobs/, launch/) and the worker (train/): what one writes and
the other reads, so neither imports the other's package."""
