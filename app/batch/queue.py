"""The durable queue: one Redis stream per lane, one consumer group, at-least-once delivery.

A worker reads with XREADGROUP (async lane first), acknowledges with XACK *in the same script* that
writes the result (so a result is never written without the ack or acked without the result), keeps its
in-flight entries alive with XCLAIM (heartbeat), and takes over a dead worker's pending entries with
XAUTOCLAIM once they have been idle for ``claim_idle_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.batch.keys import GROUP, LANES, Keys

# Start a line only while its batch runs and the line has no result yet: records it in flight.
# KEYS: batch, results, running, attempts; ARGV: line, now, max_attempts
# -> 1 start, 0 batch stopped or line done, -1 attempts exhausted
START_LINE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'in_progress' or redis.call('HEXISTS', KEYS[1], 'stop') == 1 then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local n = redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
if n > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# Write a line's result once, count it, add its cost, and ack its stream entry — atomically.
# KEYS: results, batch, running, stream; ARGV: line, flag+json, ok(1|0), cost, group, entry id
# -> results written so far (the finisher compares with total), or -1 when the line already had one
WRITE_RESULT = """
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[6] ~= '' then redis.call('XACK', KEYS[4], ARGV[5], ARGV[6]) end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return -1 end
redis.call('HINCRBY', KEYS[2], 'bytes_' .. string.sub(ARGV[2], 1, 1), string.len(ARGV[2]))  -- line + newline
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'completed', 1)
else redis.call('HINCRBY', KEYS[2], 'failed', 1) end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', ARGV[4]) end
return redis.call('HLEN', KEYS[1])
"""

# Compare-and-set of a status with its timestamp. KEYS: record; ARGV: to, ts field, now, from...
TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
for i = 4, #ARGV do
  if status == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[1])
    if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
    return 1
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Entry:
    lane: str
    id: str
    fields: dict[str, str]

    @property
    def age_s(self) -> float:
        return max(time.time() - int(self.id.split("-")[0]) / 1000, 0.0)


def _entry(lane: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Entry(lane, eid, {k.decode(): v.decode() for k, v in (fields or {}).items()})


class BatchQueue:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.start_line = redis.register_script(START_LINE)
        self.write_result = redis.register_script(WRITE_RESULT)
        self.transition = redis.register_script(TRANSITION)

    async def ensure_groups(self) -> None:
        for lane in LANES:
            try:
                await self.redis.xgroup_create(self.keys.stream(lane), GROUP, id="0", mkstream=True)
            except Exception as exc:  # BUSYGROUP: it exists already
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, lane: str, fields: dict[str, str]) -> str:
        return _s(await self.redis.xadd(self.keys.stream(lane), fields))

    def enqueue_in(self, pipe: Any, lane: str, fields: dict[str, str]) -> None:
        """Queue an XADD in a pipeline/transaction (lines of a batch go in with its status change)."""
        pipe.xadd(self.keys.stream(lane), fields)

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """New entries for ``consumer``, async lane first (one blocking call over both lanes)."""
        if count <= 0:
            return []
        streams = {self.keys.stream(lane): ">" for lane in LANES}
        reply = await self.redis.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        entries: list[Entry] = []
        lane_of = {self.keys.stream(lane): lane for lane in LANES}
        for stream, items in reply or []:
            lane = lane_of[stream.decode() if isinstance(stream, bytes) else stream]
            entries += [_entry(lane, eid, fields) for eid, fields in items if fields is not None]
        entries.sort(key=lambda e: LANES.index(e.lane))
        return entries[:max(count, 0)] if len(entries) > count else entries

    async def ack(self, entry: Entry) -> None:
        await self.redis.xack(self.keys.stream(entry.lane), GROUP, entry.id)

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int = 100) -> list[Entry]:
        """Take over entries another consumer left pending for ``min_idle_ms`` (it died)."""
        claimed: list[Entry] = []
        for lane in LANES:
            stream = self.keys.stream(lane)
            reply = await self.redis.xautoclaim(stream, GROUP, consumer, min_idle_time=min_idle_ms,
                                                start_id="0-0", count=count)
            items = reply[1] if reply else []
            claimed += [_entry(lane, eid, fields) for eid, fields in items if fields]
            for deleted in (reply[2] if reply and len(reply) > 2 else []):  # trimmed away: nothing to do
                await self.redis.xack(stream, GROUP, deleted)
        return claimed

    async def heartbeat(self, consumer: str, entries: list[Entry]) -> None:
        """Reset the idle time of entries this worker still works on, so nobody reclaims them."""
        by_lane: dict[str, list[str]] = {}
        for entry in entries:
            by_lane.setdefault(entry.lane, []).append(entry.id)
        for lane, ids in by_lane.items():
            await self.redis.xclaim(self.keys.stream(lane), GROUP, consumer, min_idle_time=0, message_ids=ids,
                                    justid=True)

    async def lane_stats(self, lane: str) -> tuple[int, float]:
        """(entries not yet acknowledged: undelivered + pending, age in s of the oldest of them)."""
        stream = self.keys.stream(lane)
        groups = await self.redis.xinfo_groups(stream)
        group = next((g for g in groups if _s(g.get("name")) == GROUP), None)
        if group is None:
            return 0, 0.0
        pending = int(group.get("pending") or 0)
        lag = group.get("lag")
        lag = int(lag) if lag is not None else max(int(await self.redis.xlen(stream)) - pending, 0)
        oldest: str | None = None
        if pending:
            summary = await self.redis.xpending(stream, GROUP)
            oldest = _s(summary.get("min"))
        elif lag:
            last = _s(group.get("last-delivered-id")) or "0-0"
            after = await self.redis.xrange(stream, min=f"({last}", count=1)
            oldest = _s(after[0][0]) if after else None
        age = max(time.time() - int(oldest.split("-")[0]) / 1000, 0.0) if oldest else 0.0
        return lag + pending, age

    async def trim(self, lane: str) -> None:
        """Drop acknowledged entries: everything older than the oldest pending or undelivered one."""
        stream = self.keys.stream(lane)
        groups = await self.redis.xinfo_groups(stream)
        group = next((g for g in groups if _s(g.get("name")) == GROUP), None)
        if group is None:
            return
        floor = _s(group.get("last-delivered-id")) or "0-0"
        if int(group.get("pending") or 0):
            floor = _s((await self.redis.xpending(stream, GROUP)).get("min")) or floor
        elif floor != "0-0":
            ms, seq = floor.split("-")
            floor = f"{ms}-{int(seq) + 1}"  # the last delivered entry is acked too
        await self.redis.xtrim(stream, minid=floor, approximate=False)


def _s(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
