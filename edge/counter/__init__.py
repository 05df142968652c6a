"""The counter: service (card to durable journal entry), local API for HIS/POS, page and receipts."""

from .api import build_app, is_loopback, serve
from .cards import CardDesk, SimulatedCards, simulated_identity
from .errors import (
    BadRequest, CardProblem, CounterError, FullPaymentRequired, JournalUnavailable, NotFullPayment, NotReady,
    Refused,
)
from .online import CentreClient, CentreRefusal, CentreUnreachable, Connectivity
from .service import Clock, Counter, Settings

__all__ = [
    "build_app", "is_loopback", "serve", "CardDesk", "SimulatedCards", "simulated_identity",
    "BadRequest", "CardProblem", "CounterError", "FullPaymentRequired", "JournalUnavailable", "NotFullPayment",
    "NotReady", "Refused", "CentreClient", "CentreRefusal", "CentreUnreachable", "Connectivity",
    "Clock", "Counter", "Settings",
]
