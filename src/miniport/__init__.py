"""Miniport: background data (periodic update, pre-fetch) and custom analytics for mini-programs."""

__version__ = "0.1.0"
