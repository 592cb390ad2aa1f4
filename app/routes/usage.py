"""`GET /v2/accounts/{id}/usage`: metered monitoring time in credits (SPEC §5.1, §7).

Credits are integer micro-credits until they are written out: a day's credits are
`HOOKSTREAM_CREDITS_PER_DAY` × its whole monitored seconds / 86 400, rounded down to the
micro-credit, so the daily figures add up to `credits_consumed` exactly.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import ACCOUNT_ID, account_of_key, customer, issued_shape
from app.context import context
from app.errors import AccountNotFound
from app.monitors import monitoring_state
from app.responses import success
from app.times import iso_micros, wall_micros
from storage.base import MonitorInterval

MICROS = 1_000_000
DAY_MICROS = 86_400 * MICROS


def micro_credits_per_day(credits_per_day: float) -> int:
    """The daily rate in micro-credits, read from its decimal text so 0.1 means exactly 0.1."""
    return int((Decimal(repr(credits_per_day)) * MICROS).to_integral_value(ROUND_HALF_EVEN))


def monitored_micros_by_day(intervals: list[MonitorInterval], open_until: int | None) -> dict[date, int]:
    """Monitored µs per UTC day; an open interval runs to `open_until`, or to its last checkpoint when None."""
    by_day: defaultdict[date, int] = defaultdict(int)
    for interval in intervals:
        start = interval.started_at
        if interval.stopped_at is not None:
            end = interval.stopped_at
        else:
            end = max(interval.checkpoint_at, open_until or 0)
        while start < end:
            day_end = (start // DAY_MICROS + 1) * DAY_MICROS
            piece_end = min(end, day_end)
            by_day[datetime.fromtimestamp(start // MICROS, UTC).date()] += piece_end - start
            start = piece_end
    return dict(sorted(by_day.items()))


def usage_json(
    account_id: str,
    monitoring: str,
    credits_per_day: float,
    intervals: list[MonitorInterval],
    open_until: int | None,
) -> dict[str, Any]:
    """The usage body: credits per UTC day, their total, and the intervals they come from."""
    rate = micro_credits_per_day(credits_per_day)
    daily = []
    total = 0
    for day, micros in monitored_micros_by_day(intervals, open_until).items():
        credits = rate * (micros // MICROS) // 86_400
        total += credits
        daily.append({"date": day.isoformat(), "credits": float(Decimal(credits) / MICROS)})
    return {
        "account_id": account_id,
        "monitoring": monitoring,
        "credits_per_day": credits_per_day,
        "credits_consumed": float(Decimal(total) / MICROS),
        "daily": daily,
        "intervals": [
            {
                "started_at": iso_micros(interval.started_at),
                "stopped_at": None if interval.stopped_at is None else iso_micros(interval.stopped_at),
            }
            for interval in intervals
        ],
    }


async def get_usage(request: Request) -> Response:
    key = await customer(request)
    account_id = request.path_params["account_id"]
    ctx = context(request)
    account = await account_of_key(request, key, account_id)
    # A deleted account keeps its usage record.
    intervals = await ctx.storage.monitor_intervals(account_id, key.id) if issued_shape(account_id, ACCOUNT_ID) else []
    if account is None and not intervals:
        raise AccountNotFound(account_id)
    monitoring, open_until = "idle", None
    if account is not None and account.active_webhooks:
        lease = await ctx.storage.monitor_lease(account.id)
        monitoring, _ = monitoring_state(account, lease)
        if lease is not None and lease.expires_at > wall_micros():
            # A live holder is metering right now; a dead one's time stops at its last checkpoint.
            open_until = ctx.clock.now_micros()
    body = usage_json(account_id, monitoring, ctx.settings.credits_per_day, intervals, open_until)
    return success(body, "get_usage")


routes = [Route("/v2/accounts/{account_id}/usage", get_usage, methods=["GET"])]
