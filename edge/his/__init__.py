"""The national 两定接口 (interface for designated medical institutions and pharmacies) served on the
counter PC, online and offline: an existing HIS changes only its URL (docs/his.md).

Modules: :mod:`envelope` (request/response envelopes), :mod:`money` (yuan <-> fen, exact),
:mod:`errors` (the error tree), :mod:`store` (msgids and the HIS's visit references, his.db),
:mod:`context` (shared readers and national output shapes), :mod:`settlement` (the one visit path:
``edge.counter.Counter``), one module per transaction group — :mod:`sign` (9001/9002),
:mod:`person` (1101, 5206), :mod:`outpatient` (2201-2208), :mod:`pharmacy` (2101-2103),
:mod:`reversal` (2601), :mod:`statement` (3201), :mod:`ecvoucher` (1101 with an e-voucher; offline, the
claim that carries it) — :mod:`service` (the dispatcher) and :mod:`routes` (the HTTP routes on the counter API).
"""

from .routes import PATH, his_routes

__all__ = ["PATH", "his_routes"]
