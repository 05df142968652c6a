"""Policy checks on an identity that was read correctly: expired or hotlisted cards are refused.

Pure: ``today`` and the hotlist are arguments (the cache owns the hotlist, the caller the clock).
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from .errors import CardExpired, CardHotlisted
from .identity import Identity


def check_card(identity: Identity, today: dt.date, hotlist: Mapping[str, str]) -> None:
    """Raise CardHotlisted (card_id -> reason: "lost", "reissued", "blocked") or CardExpired.

    The hotlist is checked first: a lost card that has also expired should be kept by the clerk,
    which only the hotlist message says. The valid-until date is inclusive. A keyed-in identity has
    no card_id and no dates; it is checked against nothing here (it never settles offline anyway).
    """
    if identity.card_id and identity.card_id in hotlist:
        raise CardHotlisted(hotlist[identity.card_id])
    if identity.expires is not None and today > identity.expires:
        raise CardExpired(identity.expires)
