"""Which of this box's addresses and interfaces the other boxes can reach: for mDNS, for a round's rendezvous
store and torchrun `--local-addr`, and for the workers' collectives (gloo/NCCL). Torch-free.

`interfaces`: what the box has (read once per call, from psutil and /sys, /proc); `routes`: which local address
the kernel uses towards a peer; `collective`: the environment the workers get; `diagnosis`: a failed round's
agent log turned into one sentence naming who could not reach what.
"""
