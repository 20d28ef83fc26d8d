"""Discovery: where might the cluster's other daemons be? Emits PeerSeen / PeerLost (events.py) from mDNS
(mdns.py, python-zeroconf) and static `--peer` addresses (static.py); txt.py is the pure TXT record codec.
`python -m p2pft.discovery` runs discovery alone and prints what it sees. Liveness is the heartbeats' job.
"""
