"""The proxy lives in devstack (the soak bench uses it too); kept importable from here."""

from devstack.tcp_proxy import TcpProxy

__all__ = ["TcpProxy"]
