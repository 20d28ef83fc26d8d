"""Errors about a job's data, raised on both sides (the daemon validates and ships datasets, the worker reads
them): torch-free so the daemon can raise and catch them without importing the training stack."""

from __future__ import annotations


class DataError(ValueError):
    """One line: the file, the row number (1-based) and what is wrong with it."""


class TemplateError(ValueError):
    """A conversation cannot be rendered with the chosen template (message without file/row context)."""
