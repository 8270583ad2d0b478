"""Architectures by name: each entry checks the image shapes it supports and builds G and D."""
from models.architectures.registry import ARCHITECTURES, Architecture

__all__ = ["ARCHITECTURES", "Architecture"]
