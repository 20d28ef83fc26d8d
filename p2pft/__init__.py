"""p2pft: an office of dev-box GPUs as one elastic fine-tuning machine."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
