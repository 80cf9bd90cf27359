"""Times as people read and type them: seconds, or a clock reading like a player's (1:30, 1:02:03.5)."""

from __future__ import annotations

import math


def format_clock(seconds: float, tenths: bool = False) -> str:
    """m:ss or h:mm:ss, cut to the whole second; with `tenths`, m:ss.s rounded to the tenth (59.96 is 1:00.0)."""
    seconds = round(max(seconds, 0.0), 1) if tenths else math.floor(max(seconds, 0.0))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    secs_text = f"{secs:04.1f}" if tenths else f"{int(secs):02d}"
    return f"{hours}:{minutes:02d}:{secs_text}" if hours else f"{minutes}:{secs_text}"


def parse_clock(text: str) -> float:
    """Seconds from seconds (90, 12.5) or a clock reading (1:30, 1:02:03.5); ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("-"):
        raise ValueError(f"must not be negative, got {text}")
    try:
        numbers = [float(part) for part in text.split(":")]
    except ValueError:
        numbers = []
    if (not 1 <= len(numbers) <= 3 or not all(math.isfinite(n) and n >= 0 for n in numbers)
            or any(n >= 60 for n in numbers[1:])):
        raise ValueError(f"{text!r} is not a time: give seconds (90) or H:MM:SS / M:SS (1:30)")
    seconds = 0.0
    for n in numbers:  # hours, minutes, seconds: each part counts 60 of the next
        seconds = seconds * 60 + n
    return seconds
