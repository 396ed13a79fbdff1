"""The registry's store in Redis (redis.asyncio): every ingress replica reads one truth.

Keys under ``<prefix>:``: ``gen`` (change counter), ``n:<ns>`` (prompt names), and per prompt
``p:<ns>:<name>:`` + ``next`` (version counter), ``ver`` (version -> JSON), ``labels`` (label ->
version), ``stack:<label>`` (the label's past targets, for rollback), ``log`` (events).
Multi-key changes are Lua scripts, so a label can never point at a deleted version.
"""

from __future__ import annotations

from typing import Any

from app.prompts.store import MISSING, NOTHING_TO_ROLL_BACK, PromptState

_ADD = """
local v = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], v, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('INCR', KEYS[4])
return v
"""
_SET_LABEL = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return -1 end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if prev ~= ARGV[2] then redis.call('RPUSH', KEYS[3], ARGV[2]) end
redis.call('INCR', KEYS[4])
if prev then return tonumber(prev) end
return 0
"""
_ROLLBACK = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then return -1 end
redis.call('RPOP', KEYS[3])
while true do
  local top = redis.call('LINDEX', KEYS[3], -1)
  if not top then break end
  if top ~= cur and redis.call('HEXISTS', KEYS[1], top) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], top)
    redis.call('INCR', KEYS[4])
    return tonumber(top)
  end
  redis.call('RPOP', KEYS[3])
end
redis.call('RPUSH', KEYS[3], cur)
return -2
"""
_DELETE_VERSION = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {-1} end
local labels = redis.call('HGETALL', KEYS[2])
local hits = {}
for i = 1, #labels, 2 do
  if labels[i + 1] == ARGV[1] then table.insert(hits, labels[i]) end
end
if #hits > 0 then return hits end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[3])
return {}
"""
_HINCR = """
for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
_DELETE_LABEL = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
if n > 0 then redis.call('INCR', KEYS[3]) end
return n
"""


class RedisPromptStore:
    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client  # redis.asyncio.Redis with decode_responses=True
        self.prefix = prefix
        self._add = client.register_script(_ADD)
        self._set_label = client.register_script(_SET_LABEL)
        self._rollback = client.register_script(_ROLLBACK)
        self._delete_version = client.register_script(_DELETE_VERSION)
        self._delete_label = client.register_script(_DELETE_LABEL)
        self._hincr = client.register_script(_HINCR)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisPromptStore:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix)

    @property
    def _gen_key(self) -> str:
        return f"{self.prefix}:gen"

    def _p(self, ns: str, name: str, part: str) -> str:
        return f"{self.prefix}:p:{ns}:{name}:{part}"

    def key(self, part: str) -> str:
        """A key of the generic helpers (experiments, counters) under this store's prefix."""
        return f"{self.prefix}:{part}"

    async def generation(self) -> int:
        return int(await self.r.get(self._gen_key) or 0)

    async def bump(self) -> int:
        return int(await self.r.incr(self._gen_key))

    async def state(self, ns: str, name: str) -> PromptState:
        pipe = self.r.pipeline(transaction=True)  # one snapshot: the state and the generation it belongs to
        pipe.get(self._gen_key)
        pipe.exists(self._p(ns, name, "next"))
        pipe.hkeys(self._p(ns, name, "ver"))
        pipe.hgetall(self._p(ns, name, "labels"))
        gen, exists, versions, labels = await pipe.execute()
        return PromptState(int(gen or 0), bool(exists), sorted(int(v) for v in versions),
                           {k: int(v) for k, v in labels.items()})

    async def add_version(self, ns: str, name: str, payload: str) -> int:
        keys = [self._p(ns, name, "next"), self._p(ns, name, "ver"), f"{self.prefix}:n:{ns}", self._gen_key]
        return int(await self._add(keys=keys, args=[payload, name]))

    async def get_versions(self, ns: str, name: str, versions: list[int]) -> dict[int, str]:
        if not versions:
            return {}
        values = await self.r.hmget(self._p(ns, name, "ver"), [str(v) for v in versions])
        return {v: p for v, p in zip(versions, values, strict=True) if p is not None}

    async def names(self, ns: str) -> list[str]:
        return sorted(await self.r.smembers(f"{self.prefix}:n:{ns}"))

    async def set_label(self, ns: str, name: str, label: str, version: int) -> int:
        keys = [self._p(ns, name, "ver"), self._p(ns, name, "labels"), self._p(ns, name, f"stack:{label}"),
                self._gen_key]
        return int(await self._set_label(keys=keys, args=[label, str(version)]))

    async def rollback(self, ns: str, name: str, label: str) -> int:
        keys = [self._p(ns, name, "ver"), self._p(ns, name, "labels"), self._p(ns, name, f"stack:{label}"),
                self._gen_key]
        result = int(await self._rollback(keys=keys, args=[label]))
        return result if result > 0 else (MISSING if result == -1 else NOTHING_TO_ROLL_BACK)

    async def delete_label(self, ns: str, name: str, label: str) -> bool:
        keys = [self._p(ns, name, "labels"), self._p(ns, name, f"stack:{label}"), self._gen_key]
        return bool(await self._delete_label(keys=keys, args=[label]))

    async def delete_version(self, ns: str, name: str, version: int) -> list[str] | None:
        keys = [self._p(ns, name, "ver"), self._p(ns, name, "labels"), self._gen_key]
        result = await self._delete_version(keys=keys, args=[str(version)])
        if result and result[0] == -1:
            return None
        return sorted(str(x) for x in result)

    async def log_event(self, ns: str, name: str, event: str) -> None:
        key = self._p(ns, name, "log")
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(key, event)
        pipe.ltrim(key, -500, -1)
        await pipe.execute()

    async def events(self, ns: str, name: str, limit: int = 50) -> list[str]:
        return list(await self.r.lrange(self._p(ns, name, "log"), -limit, -1))

    async def kv_incr(self, key: str, amount: float) -> float:
        return float(await self.r.incrbyfloat(self.key(key), amount))

    async def kv_get(self, key: str) -> str | None:
        return await self.r.get(self.key(key))

    async def kv_set(self, key: str, value: str) -> None:
        await self.r.set(self.key(key), value)

    async def kv_delete(self, key: str) -> None:
        await self.r.delete(self.key(key))

    async def hincr(self, key: str, amounts: dict[str, float]) -> None:
        """All counters of one outcome in one command (a request's stats cost one round trip)."""
        args = [x for name, amount in amounts.items() for x in (name, repr(float(amount)))]
        await self._hincr(keys=[self.key(key)], args=args)

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(await self.r.hgetall(self.key(key)))

    async def set_add(self, key: str, member: str) -> None:
        await self.r.sadd(self.key(key), member)

    async def set_members(self, key: str) -> list[str]:
        return sorted(await self.r.smembers(self.key(key)))

    async def aclose(self) -> None:
        await self.r.aclose()
