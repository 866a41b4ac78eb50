"""The loopback S3 server lives in ``sim/s3_server.py`` (the S3 benchmark starts it too)."""

from sim.s3_server import S3Server

__all__ = ["S3Server"]
