"""p2pft: an office of dev-box GPUs as one elastic fine-tuning machine."""

from typing import Any

__version__ = "0.1.0"
PROTOCOL_VERSION = 1


def __getattr__(name: str) -> Any:
    # Lazy: `import p2pft` stays torch-free; p2pft.evaluate pulls in torch only when used.
    if name == "evaluate":
        from p2pft.train.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'p2pft' has no attribute {name!r}")
