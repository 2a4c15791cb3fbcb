"""The round loop: session, simulated oracle, simulation of strategies. No UI imports here."""
from .oracle import Oracle
from .simulation import simulate

__all__ = ["Oracle", "Session", "simulate"]


def __getattr__(name):
    if name == "Session":
        from .session import Session
        return Session
    raise AttributeError(name)
