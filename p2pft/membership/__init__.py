"""Who is in the cluster, who is alive, who coordinates: pure state and decisions (see state.py)."""
