"""The XSole device client lives in bench/ (the benches use it and cannot import tests/)."""

from bench.xsole_client import XSoleTestClient

__all__ = ["XSoleTestClient"]
