"""The counter's trusted time floor (DOMAIN.md section 6, "Time and identity at the edge"). Pure.

Theory of operation
-------------------
The PC's wall clock is the only clock that survives a reboot, and anyone can set it. Offline limits
(cache age, visits since the last online settlement) are measured with it, so a clock set back
makes an old cache look young and lets entries go back in time. The floor is the latest time the
counter knows has already happened:

    floor = max(last journal entry's time, last centre time seen, newest bundle's issue time)

and within one boot it moves on with the monotonic clock (which nobody can set): a floor taken at
monotonic reading m0 is worth ``floor + (now_mono - m0)`` later. A wall clock below the floor, or
more than :data:`MAX_CENTRE_SKEW_MS` away from the centre's clock when the centre's is known, is a
clock fault: offline limits fail closed (full payment) and the clerk is told to fix the PC clock.
Journal entries are timed ``max(now, floor)`` so times never decrease within a chain.
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
          centre_offset_ms: int | None = None) -> ClockFault | None:
    """Is the wall clock wrong? ``centre_offset_ms`` = centre time − local wall time, last seen."""
    if floor is not None:
        lowest = floor.at(now_mono_ns)
        if now_wall_ms + FLOOR_SLACK_MS < lowest:
            minutes = (lowest - now_wall_ms) // 60_000
            return ClockFault("behind_floor",
                              f"the wall clock is {minutes} min behind the latest time this counter has seen "
                              "(journal, centre or bundle): it was set back",
                              f"电脑时钟比本机已记录的最新时间慢 {minutes} 分钟（时钟被调回）："
                              "请校准电脑时间（北京时间）后再结算；在此之前不能脱机结算")
    if centre_offset_ms is not None and abs(centre_offset_ms) > MAX_CENTRE_SKEW_MS:
        minutes = abs(centre_offset_ms) // 60_000
        way = "慢" if centre_offset_ms > 0 else "快"
        return ClockFault("off_from_centre",
                          f"the wall clock is {minutes} min off the centre's clock",
                          f"电脑时钟比医保中心{way} {minutes} 分钟：请校准电脑时间（北京时间）后再结算；"
                          "在此之前不能脱机结算")
    return None


def entry_time(now_wall_ms: int, floor: Floor | None, now_mono_ns: int | None = None) -> int:
    """The time to journal: never below the floor, so times never decrease within the chain."""
    return now_wall_ms if floor is None else max(now_wall_ms, floor.at(now_mono_ns))


__all__ = ["Floor", "ClockFault", "floor_of", "raise_floor", "fault", "entry_time", "MAX_CENTRE_SKEW_MS"]
