"""Elastic jobs across the mesh: submit, ship data, rounds of torchrun agents, replication, outputs (torch-free)."""
