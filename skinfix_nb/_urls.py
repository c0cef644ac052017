"""Loopback checks shared by the client side and the local server.

Both apply the same rule: plain ``http://`` is acceptable only on this machine.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True for ``http(s)://127.0.0.1``, ``localhost`` and ``[::1]`` URLs."""
    return is_loopback_host(urlsplit(url).hostname or "")
