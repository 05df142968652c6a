"""The counter's trusted time floor (DOMAIN.md section 6, "Time and identity at the edge"). Pure.

Theory of operation
-------------------
The PC's wall clock is the only clock that survives a reboot, and anyone can set it. Offline limits
(cache age, visits since the last online settlement) are measured with it, so a clock set back
makes an old cache look young and lets entries go back in time. The floor is the latest time the
counter knows has already happened:

    floor = max(last journal entry's time, last centre time seen, newest bundle's issue time,
                the cache's last refresh − MAX_CENTRE_SKEW_MS)

and within one boot it moves on with the monotonic clock (which nobody can set): a floor taken at
monotonic reading m0 is worth ``floor + (now_mono - m0)`` later. A wall clock below the floor, or
more than :data:`MAX_CENTRE_SKEW_MS` away from the centre's clock when the centre's is known, is a
clock fault: offline limits fail closed (full payment) and the clerk is told to fix the PC clock.
Journal entries are timed ``max(now, floor, last entry's time)`` so times never decrease within a chain.

The centre's time (:class:`CentreSeen`) is read from the HTTP ``Date`` header of every answer the
centre gives (online settlement, the uplink's upload and feed, the reachability probe; a 401 for a
request signed too far from the centre's clock too), kept with the local wall and monotonic readings
of that moment, and saved in the cache so it survives a restart. It gives two things:

* a floor: ``centre_ms − MAX_CENTRE_SKEW_MS`` (a PC clock that much behind the centre is accepted by
  the centre, so it is no fault here either), moving on with the monotonic clock;
* within the same boot, the centre's clock *now* (``centre_ms`` + monotonic time elapsed): a wall
  clock more than :data:`MAX_CENTRE_SKEW_MS` from it is off, ahead as well as behind, even while the
  centre cannot be reached.

The centre's time wins: when the centre is seen and the wall clock agrees with it, a floor above the
wall clock can only come from entries journaled while the clock was ahead (a week ahead during an
outage, then corrected). That floor is dropped, so the counter is not locked out until the wrong time
comes round; the saved observation names the journal head it outranks, so a restart drops it too.
Entry times still never decrease within the chain (``chain``): the centre sends an entry timed before
its predecessor to review, so after such a correction entries keep the last entry's time until the
wall clock passes it.
"""

from __future__ import annotations

from dataclasses import dataclass

# The centre refuses signed requests more than 5 minutes off (sync/auth.py); the same bound here.
MAX_CENTRE_SKEW_MS = 300_000
# A wall clock this far below the floor is a fault (smaller moves are NTP slew and rounding).
FLOOR_SLACK_MS = 2_000


@dataclass(frozen=True, slots=True)
class Floor:
    """A trusted lower bound ``wall_ms`` of the wall clock, taken at monotonic reading ``mono_ns``
    (None: taken in another boot, so it does not move on by itself)."""

    wall_ms: int
    mono_ns: int | None = None

    def at(self, now_mono_ns: int | None) -> int:
        """The floor now: advanced by the monotonic time elapsed since it was taken (same boot only)."""
        if self.mono_ns is None or now_mono_ns is None or now_mono_ns < self.mono_ns:
            return self.wall_ms
        return self.wall_ms + (now_mono_ns - self.mono_ns) // 1_000_000


@dataclass(frozen=True, slots=True)
class ClockFault:
    code: str          # behind_floor | off_from_centre
    detail: str        # English, for logs
    zh: str            # for the clerk: what to do

    def to_dict(self) -> dict:
        return {"code": self.code, "detail": self.detail, "zh": self.zh}


@dataclass(frozen=True, slots=True)
class CentreSeen:
    """The centre's clock as read in one of its answers, and this PC's clocks at that moment."""

    centre_ms: int       # the centre's clock (its answer's Date header: whole seconds)
    wall_ms: int         # this PC's wall clock then
    mono_ns: int         # this PC's monotonic clock then (comparable within ``boot_id`` only)
    boot_id: str
    head_seq: int = 0    # the journal's head then: entries up to it were journaled before this answer

    @property
    def agreed(self) -> bool:
        """Did the wall clock agree with the centre's then?"""
        return abs(self.centre_ms - self.wall_ms) <= MAX_CENTRE_SKEW_MS

    def centre_now(self, now_mono_ns: int | None, boot_id: str | None) -> int | None:
        """The centre's clock now, by the monotonic clock; None in another boot. A reading taken before this
        observation (a visit's clocks read on the loop, the centre's answer arriving while it is prepared)
        counts back from it: None there let a clock a year ahead pass unseen and date the visit next year."""
        if not _same_boot(self.boot_id, boot_id) or now_mono_ns is None:
            return None
        return self.centre_ms + (now_mono_ns - self.mono_ns) // 1_000_000

    def floor(self, boot_id: str | None) -> Floor:
        """Time that has surely come: the centre's, less the skew the centre itself accepts."""
        return Floor(self.centre_ms - MAX_CENTRE_SKEW_MS, self.mono_ns if _same_boot(self.boot_id, boot_id) else None)

    def to_dict(self) -> dict:
        return {"centre_ms": self.centre_ms, "wall_ms": self.wall_ms, "mono_ns": self.mono_ns,
                "boot_id": self.boot_id, "head_seq": self.head_seq}

    @classmethod
    def from_dict(cls, d: dict) -> "CentreSeen":
        return cls(int(d["centre_ms"]), int(d["wall_ms"]), int(d["mono_ns"]), str(d["boot_id"]), int(d.get("head_seq", 0)))


def _same_boot(a: str | None, b: str | None) -> bool:
    """Monotonic readings compare only within one boot; an unknown boot id (no /proc) matches nothing."""
    return a is not None and a == b and a != "unknown"


def centre_ms_of(date: str | None) -> int | None:
    """The centre's clock from an HTTP ``Date`` header (None when absent or not a date)."""
    import email.utils

    if not date:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def after_centre_seen(floor: Floor | None, seen: CentreSeen, now_wall_ms: int, now_mono_ns: int | None,
                      boot_id: str | None) -> Floor | None:
    """The floor after the centre's time was seen: raised to it; and when the wall clock agrees with the
    centre while the floor is above the wall clock, the floor came from a clock that was ahead: the
    centre's time wins (see the module docstring)."""
    mine = seen.floor(boot_id)
    if seen.agreed and floor is not None and floor.at(now_mono_ns) > now_wall_ms + FLOOR_SLACK_MS:
        return mine
    return raise_floor(floor, mine.wall_ms, mine.mono_ns)


def refresh_floor(wall_ms: int, mono_ns: int, refresh_boot: str, boot_id: str | None) -> Floor:
    """The floor from the cache's last refresh: a sync round ends only with a request the centre accepted as
    signed within :data:`MAX_CENTRE_SKEW_MS` of its clock, so the wall clock then, less that skew, has surely
    come. It counts even when the saved centre time was deleted or never saved (saving it is best effort)."""
    return Floor(wall_ms - MAX_CENTRE_SKEW_MS, mono_ns if _same_boot(refresh_boot, boot_id) else None)


def floor_of(*times: int | None, mono_ns: int | None = None) -> Floor | None:
    """The floor from the times the counter trusts (None ones are ignored); None when none is known."""
    known = [t for t in times if t is not None]
    return Floor(max(known), mono_ns) if known else None


def raise_floor(floor: Floor | None, wall_ms: int | None, mono_ns: int | None) -> Floor | None:
    """The floor after a new trusted time (a journaled entry, a centre answer, a bundle)."""
    if wall_ms is None:
        return floor
    if floor is None:
        return Floor(wall_ms, mono_ns)
    now = floor.at(mono_ns)
    return Floor(wall_ms, mono_ns) if wall_ms >= now else Floor(now, mono_ns if floor.mono_ns is not None else None)


def fault(now_wall_ms: int, floor: Floor | None, now_mono_ns: int | None = None, *,
          centre_offset_ms: int | None = None, centre: CentreSeen | None = None,
          boot_id: str | None = None) -> ClockFault | None:
    """Is the wall clock wrong? ``centre_offset_ms`` = centre time − local wall time; by default taken from
    ``centre`` (the last centre time seen) when it was seen in this boot. The centre's word comes first:
    it says by how much, and either way."""
    if centre_offset_ms is None and centre is not None:
        now_centre = centre.centre_now(now_mono_ns, boot_id)
        if now_centre is not None:
            centre_offset_ms = now_centre - now_wall_ms
    if centre_offset_ms is not None and abs(centre_offset_ms) > MAX_CENTRE_SKEW_MS:
        return _off_from_centre(centre_offset_ms)
    if floor is not None:
        lowest = floor.at(now_mono_ns)
        if now_wall_ms + FLOOR_SLACK_MS < lowest:
            minutes = (lowest - now_wall_ms) // 60_000
            return ClockFault("behind_floor",
                              f"the wall clock is {minutes} min behind the latest time this counter has seen "
                              "(journal, centre or bundle): it was set back",
                              f"电脑时钟比本机已记录的最新时间慢 {minutes} 分钟（时钟被调回）："
                              "请校准电脑时间（北京时间）后再结算；在此之前不能脱机结算")
    return None


def refused_by_centre() -> ClockFault:
    """The centre refused this PC's last signed request for its time: the clock is off, by however much."""
    return ClockFault("off_from_centre", "the centre refused the last request's signing time: the wall clock is "
                      f"more than {MAX_CENTRE_SKEW_MS // 60_000} min off the centre's clock",
                      f"医保中心拒绝了本机的请求时间（电脑时钟与医保中心相差超过 {MAX_CENTRE_SKEW_MS // 60_000} 分钟）："
                      "请校准电脑时间（北京时间）后再结算；在此之前不能脱机结算")


def _off_from_centre(offset_ms: int) -> ClockFault:
    minutes = abs(offset_ms) // 60_000
    way, ahead = ("慢", "behind") if offset_ms > 0 else ("快", "ahead of")
    return ClockFault("off_from_centre", f"the wall clock is {minutes} min {ahead} the centre's clock",
                      f"电脑时钟比医保中心{way} {minutes} 分钟：请校准电脑时间（北京时间）后再结算；"
                      "在此之前不能脱机结算")


def entry_time(now_wall_ms: int, floor: Floor | None, now_mono_ns: int | None = None) -> int:
    """The time to journal: never below the floor, so times never decrease within the chain."""
    return now_wall_ms if floor is None else max(now_wall_ms, floor.at(now_mono_ns))


__all__ = ["Floor", "ClockFault", "CentreSeen", "floor_of", "raise_floor", "fault", "entry_time", "after_centre_seen",
           "centre_ms_of", "refresh_floor", "refused_by_centre",
           "MAX_CENTRE_SKEW_MS"]
