"""LLaMA-Factory datasets -> tokenised, label-masked training examples (torch only inside `collate`)."""

from p2pft.train.data.collate import collate
from p2pft.train.data.prepare import prepare_data
from p2pft.train.data.types import DataError, Example, PreparedData

__all__ = ["DataError", "Example", "PreparedData", "collate", "prepare_data"]
