"""Five-field cron expressions, parsed and evaluated here (no dependency).

Why our own: the policy needs only "did this schedule fire since X" and "when
does it fire next" on wall-clock minutes, and a device image should not carry a
scheduling library for that. The syntax is Vixie cron's:

``minute hour day-of-month month day-of-week``, each field ``*``, a number, a
range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of those;
months and weekdays also by name (``jan``, ``mon``); weekday 0 and 7 are Sunday;
``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually`` are shorthands. As in cron, when both day fields are
restricted a day matches if EITHER matches; otherwise both must.

Times are naive wall-clock datetimes; the caller converts to and from the
policy's timezone.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
SEARCH_DAYS = 366 * 8 + 2
"""How far previous/next look: any valid expression fires within 8 years (Feb 29 on a weekday)."""


class CronError(ValueError):
    """An expression that is not valid cron; the message says which field and why."""


def _number(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower())
    if value is None:
        if not text.isdigit():
            raise CronError(f"{field}: {text!r} is not a number" + (" or a name" if names else ""))
        value = int(text)
    if not low <= value <= high:
        raise CronError(f"{field}: {value} is out of range {low}-{high}")
    return value


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _number(first, field, low, high, names)
            end = _number(last, field, low, high, names)
            if start > end:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _number(base, field, low, high, names)
            end = high if slash else start  # "5/15" means 5, 20, 35, 50
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """One parsed expression; `previous` and `next` find its fire times."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 = Sunday ... 6 = Saturday (7 folded into 0)."""
    day_or: bool
    """Both day fields restricted: a day matches when either does (cron's rule)."""

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = day.isoweekday() % 7 in self.weekdays
        return (by_date or by_weekday) if self.day_or else (by_date and by_weekday)

    def matches(self, at: datetime) -> bool:
        return self.day_matches(at.date()) and at.hour in self.hours and at.minute in self.minutes

    def previous(self, at: datetime) -> datetime | None:
        """The latest fire time at or before `at` (minute resolution), None if none in 8 years."""
        at = at.replace(second=0, microsecond=0)
        day = at.date()
        for _ in range(SEARCH_DAYS):
            if self.day_matches(day):
                last_hour = at.hour if day == at.date() else 23
                for hour in reversed(self.hours):
                    if hour > last_hour:
                        continue
                    last_minute = at.minute if (day == at.date() and hour == at.hour) else 59
                    minute = next((m for m in reversed(self.minutes) if m <= last_minute), None)
                    if minute is not None:
                        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=at.tzinfo)
            day -= timedelta(days=1)
        return None

    def next(self, after: datetime) -> datetime | None:
        """The earliest fire time strictly after `after`, None if none in 8 years."""
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.date()
        for _ in range(SEARCH_DAYS):
            if self.day_matches(day):
                first_hour = start.hour if day == start.date() else 0
                for hour in self.hours:
                    if hour < first_hour:
                        continue
                    first_minute = start.minute if (day == start.date() and hour == start.hour) else 0
                    minute = next((m for m in self.minutes if m >= first_minute), None)
                    if minute is not None:
                        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=start.tzinfo)
            day += timedelta(days=1)
        return None


@lru_cache(maxsize=256)
def parse_cron(text: str) -> Cron:
    """Parse `text` or raise CronError naming the field at fault."""
    expanded = ALIASES.get(text.strip().lower(), text)
    if expanded.strip().startswith("@"):
        raise CronError(f"unknown shorthand {text.strip()!r} (known: {', '.join(ALIASES)})")
    parts = expanded.split()
    if len(parts) != 5:
        raise CronError(
            f"{len(parts)} fields in {text!r}; cron needs 5: minute hour day-of-month month day-of-week"
        )
    sets = [
        _field(p, name, low, high, names) for p, (name, low, high, names) in zip(parts, FIELDS, strict=True)
    ]
    minutes, hours, days, months, weekdays = sets
    weekdays = frozenset(d % 7 for d in weekdays)
    cron = Cron(
        text=text.strip(),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=days,
        months=months,
        weekdays=weekdays,
        day_or=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )
    if not cron.day_or and not any(
        d <= _longest_month(m) for m in months for d in days
    ):  # e.g. "0 0 30 2 *": February never has a 30th
        raise CronError(f"day of month: {parts[2]!r} never occurs in month {parts[3]!r}")
    return cron


def _longest_month(month: int) -> int:
    return calendar.monthrange(2024, month)[1]  # 2024 is a leap year: February has 29 days
