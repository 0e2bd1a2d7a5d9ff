"""The Python runtime client: what a host container embeds to give a mini-program the ``wx``
background-data API (and, with analytics, ``reportAnalytics`` / ``reportEvent``)."""

from .analytics import RuntimeAnalytics
from .client import RuntimeAPIError, RuntimeClient

__all__ = ["RuntimeAPIError", "RuntimeAnalytics", "RuntimeClient"]
