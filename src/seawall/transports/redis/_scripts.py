"""The Lua scripts of the Redis transport, each one atomic step on the server.

* ``publish``: append a batch of entries to a channel's partition streams
  (``KEYS``: the meta hash, the ``added`` hash, then the streams; ``ARGV``:
  the bound, whether the channel is ephemeral, then per entry the stream's
  index, its field count and its fields). An entry goes in unless its
  partition holds its bound of unsettled entries; when full (and every 1024
  entries) the script first trims what every group has settled. Returns per
  entry its new id or ``-1`` when full; ``0`` alone when an ephemeral channel
  has gone. A stream of an ephemeral channel left without a time to live (one
  that expired and was made again by this append) takes the ``meta`` hash's.
  Entries of durable channels are numbered (see *Entry ids* below).
* ``schedule``: hold an entry back in the channel's ``scheduled`` sorted set
  (scored by due time; the member is the partition number and the fields,
  each prefixed by its length as 4 bytes big-endian) unless the set holds
  ``max_messages`` already (``-1``).
* ``release``: move due scheduled entries to their partition streams (``KEYS``:
  the set, then every partition stream, then the ``added`` hash; ``ARGV``: now,
  how many at most, whether the channel is ephemeral), numbered as a publish
  numbers them; returns how many and the next due time.
* ``seek``: where a new group must be created on a stream (``KEYS``: the
  stream) to read the entries numbered ``ARGV[1]`` and later: the id just
  before the first of them, ``0-0`` when the oldest entry kept is one of them,
  ``$`` when none is (yet). A binary search over the milliseconds of the ids,
  each step one ``XRANGE … COUNT 1``.
* ``give_back``: a nacked or returned entry moves to the ``PARKED`` consumer
  (optionally with its delivery count lowered, for entries never handed to
  the application) and into the group's retry set, due at a given time. The
  retry set takes the stream's time to live, if it has one (ephemeral channels).
  Its member is the entry id with both numbers zero-padded to 20 digits, so
  that entries due at the same millisecond come again in stream order (a
  sorted set orders equal scores by member, as text: ``5-10`` before ``5-2``).
* ``take_due``: claim the retry set's due entries for a consumer; returns
  each entry with its delivery count (the attempt), and the next due time.
* ``reclaim``: claim entries idle longer than ``ARGV[3]`` ms from other
  consumers (a process died, a subscription's link broke), never the parked
  ones; at most ``ARGV[4]`` (the credit); counts as an attempt. It goes
  consumer by consumer (``XINFO CONSUMERS``, then the first 1,000 pending
  entries of each), not along the group's pending list, where older parked
  entries could hide the orphans; it deletes a consumer silent that long that
  holds nothing. Returns the entries and the milliseconds until the next
  entry of another consumer is idle that long (0: more are due than there was
  credit for).
* ``heartbeat``: renew a member's lease and its partition locks (``KEYS``:
  the members set, then the locks; ``ARGV``: the member, the lease in
  milliseconds, then the value each lock should hold), by the server's
  clock; returns the live members and the locks it lost.
* ``members``: the live members (``KEYS``: the members set; ``ARGV``: the
  lease), pruning those whose lease ran out, by the server's clock.
* ``take``: set a partition lock if absent (``KEYS``: the lock, the epochs
  hash; ``ARGV``: the member, the lease, the partition) to
  ``<member>:<epoch>``, the epoch counted up in the hash; returns the epoch,
  or ``0`` when the lock is held.
* ``unlock``: delete a partition lock if it still holds the given value.
* ``expire``: give every key of an ephemeral channel (``KEYS``: the meta hash
  first) a time to live of ``ARGV[1]`` milliseconds, unless the meta hash has
  already gone (``0``): its owner renews them while it lives.
* ``touch``: in the channel's ``idle`` hash (``KEYS``), note by the server's
  clock that group ``ARGV[1]`` is in use, expiring after ``ARGV[2]`` ms
  (empty: only if it expires already); returns its expiry in ms, or ``0``.
  See :mod:`._idle`.
* ``sweep``: destroy, on every stream of the channel (``KEYS``: the ``idle``
  hash, then the streams), each expiring group (``ARGV``: per group its field
  in the hash and its consumer group name) last noted in use longer ago than
  its expiry. Returns the fields of the groups destroyed.

Stream ids are compared as (milliseconds, sequence) pairs of numbers; in a retry
set they are padded (``take_due`` also reads the unpadded members older versions wrote).

Entry ids: an entry of a durable channel gets the id ``<ms>-<n>``: ``ms`` is
the server's clock (``TIME``) in milliseconds and ``n`` counts the entries
ever appended to that stream (a field per stream in the channel's ``added``
hash, from 1). Both grow together, so ids still sort by time (``FromTime``
looks a time up with ``XREVRANGE``) and ``n - 1`` is the entry's *offset*, its
position in its partition or level (``FromOffsets`` looks it up with
``seek``). Should the server's clock go back, or another writer have added a
later id, the entry takes the last id's milliseconds instead (and, failing
that, an id of Redis's choosing, which ``seek`` may then misplace).
Ephemeral channels (reply inboxes) keep Redis's own ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["SCRIPTS", "Script"]

_IDS = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
"""

_APPEND = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function last_ms(stream)
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return (parse(info[i + 1])) end
  end
  return 0
end
local function failed(reply) return type(reply) == 'table' and reply.err ~= nil end
-- Append the fields args[first..last] to stream as its next numbered entry (see above).
local function append(stream, added, ms, args, first, last)
  local n = redis.call('HINCRBY', added, stream, 1)
  local id = redis.pcall('XADD', stream, string.format('%d-%d', ms, n), unpack(args, first, last))
  if failed(id) then
    id = redis.pcall('XADD', stream, string.format('%d-%d', last_ms(stream), n),
      unpack(args, first, last))
  end
  if failed(id) then id = redis.call('XADD', stream, '*', unpack(args, first, last)) end
  return id
end
"""

_PADDED = """
local function pad(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end
local function unpad(member)
  local ms, seq = string.match(member, '^(%d+)-(%d+)$')
  return (string.gsub(ms, '^0+(%d)', '%1')) .. '-' .. (string.gsub(seq, '^0+(%d)', '%1'))
end
"""

_PUBLISH = (
    _IDS
    + _APPEND
    + """
local meta, added = KEYS[1], KEYS[2]
local ms = now_ms()
if ARGV[2] == '1' and redis.call('EXISTS', meta) == 0 then return 0 end
local function floor(stream)
  local lowest = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    local pending = redis.call('XPENDING', stream, name)
    local f
    if pending[1] > 0 then
      f = pending[2]
    else
      local ms, seq = parse(last)
      f = string.format('%d-%d', ms, seq + 1)
    end
    if lowest == nil or less(f, lowest) then lowest = f end
  end
  return lowest
end
local bound = tonumber(ARGV[1])
local out = {}
local i = 3
while i <= #ARGV do
  local stream = KEYS[tonumber(ARGV[i]) + 3]
  local last = i + 1 + tonumber(ARGV[i + 1])
  local length = redis.call('XLEN', stream)
  if length >= bound or (length > 0 and length % 1024 == 0) then
    local f = floor(stream)
    if f then redis.call('XTRIM', stream, 'MINID', f) end
    length = redis.call('XLEN', stream)
  end
  if length >= bound then
    out[#out + 1] = -1
  elseif ARGV[2] == '0' then
    out[#out + 1] = append(stream, added, ms, ARGV, i + 2, last)
  else
    out[#out + 1] = redis.call('XADD', stream, '*', unpack(ARGV, i + 2, last))
    if redis.call('PTTL', stream) == -1 then
      local ttl = redis.call('PTTL', meta)
      if ttl > 0 then redis.call('PEXPIRE', stream, ttl) end
    end
  end
  i = last + 1
end
return out
"""
)

_SCHEDULE = """
local scheduled = KEYS[1]
if redis.call('ZCARD', scheduled) >= tonumber(ARGV[1]) then return -1 end
return redis.call('ZADD', scheduled, ARGV[2], ARGV[3])
"""

_RELEASE = (
    _IDS
    + _APPEND
    + """
local scheduled, added = KEYS[1], KEYS[#KEYS]
local now, limit = ARGV[1], tonumber(ARGV[2])
local ms = now_ms()
local moved = 0
for _, packed in ipairs(redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', scheduled, packed)
  local parts, pos, n = {}, 1, 0
  while pos <= #packed do
    n, pos = struct.unpack('>I4', packed, pos)
    parts[#parts + 1] = string.sub(packed, pos, pos + n - 1)
    pos = pos + n
  end
  local stream = KEYS[tonumber(parts[1]) + 2]
  if ARGV[3] == '1' then
    redis.call('XADD', stream, '*', unpack(parts, 2))
  else
    append(stream, added, ms, parts, 2, #parts)
  end
  moved = moved + 1
end
local nxt = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
return {moved, nxt[2] or ''}
"""
)

_SEEK = (
    _IDS
    + """
local stream, target = KEYS[1], tonumber(ARGV[1])
local function first_from(ms, n)
  local e = redis.call('XRANGE', stream, string.format('%d-%d', ms, n), '+', 'COUNT', 1)[1]
  if e then return parse(e[1]) end
  return nil, nil
end
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
if not newest then return '$' end
local hm, hs = parse(newest[1])
if hs < target then return '$' end
local lm, ls = parse(redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1])
if ls >= target then return '0-0' end
-- the smallest ms whose first entry at or after (ms, target) is numbered target or later
local function reaches(m)
  local _, n = first_from(m, target)
  return n ~= nil and n >= target
end
local lo, hi = lm, hm
if reaches(lo) then
  hi = lo
else
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if reaches(mid) then hi = mid else lo = mid end
  end
end
local m, n = first_from(hi, target)
return string.format('%d-%d', m, n - 1)
"""
)

_GIVE_BACK = (
    _PADDED
    + """
local retry, stream = KEYS[1], KEYS[2]
local group, due, parked = ARGV[1], ARGV[2], ARGV[3]
local moved = 0
for i = 4, #ARGV, 2 do
  local id, count = ARGV[i], ARGV[i + 1]
  local got
  if count == '' then
    got = redis.call('XCLAIM', stream, group, parked, 0, id, 'JUSTID')
  else
    got = redis.call('XCLAIM', stream, group, parked, 0, id, 'RETRYCOUNT', count, 'JUSTID')
  end
  if got[1] then
    redis.call('ZADD', retry, due, pad(id))
    moved = moved + 1
  end
end
local ttl = redis.call('PTTL', stream)
if moved > 0 and ttl > 0 then redis.call('PEXPIRE', retry, ttl) end
return moved
"""
)

_TAKE_DUE = (
    _PADDED
    + """
local retry, stream = KEYS[1], KEYS[2]
local group, consumer, now, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', retry, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', retry, member)
  local id = unpad(member)
  local got = redis.call('XCLAIM', stream, group, consumer, 0, id)
  if got[1] then
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    out[#out + 1] = {got[1][1], got[1][2], p[1][4]}
  end
end
local nxt = redis.call('ZRANGE', retry, 0, 0, 'WITHSCORES')
return {out, nxt[2] or ''}
"""
)

_RECLAIM = """
local stream = KEYS[1]
local group, consumer, parked = ARGV[1], ARGV[2], ARGV[5]
local idle, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', stream) == 0 then
  return redis.error_reply('NOGROUP the stream ' .. stream .. ' does not exist')
end
local out = {}
local wait = idle
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local name, pending = info['name'], info['pending']
  if name == parked or name == consumer then
    -- the retry sets' holder, and this member: never orphans
  elseif pending == 0 then
    if info['idle'] >= idle then redis.call('XGROUP', 'DELCONSUMER', stream, group, name) end
  else
    for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 1000, name)) do
      if p[3] < idle then
        wait = math.min(wait, idle - p[3])
      elseif #out == limit then
        wait = 0
      else
        local got = redis.call('XCLAIM', stream, group, consumer, idle, p[1])
        if got[1] then out[#out + 1] = {got[1][1], got[1][2], p[4] + 1} end
      end
    end
  end
end
return {out, wait}
"""

_IDLE_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_TOUCH = (
    _IDLE_NOW
    + """
local expiry = ARGV[2]
if expiry == '' then
  local old = redis.call('HGET', KEYS[1], ARGV[1])
  if not old then return 0 end
  expiry = string.match(old, '^(%d+):')
end
redis.call('HSET', KEYS[1], ARGV[1], expiry .. ':' .. now)
return tonumber(expiry)
"""
)

_SWEEP = (
    _IDLE_NOW
    + """
local gone = {}
for i = 1, #ARGV, 2 do
  local field, group = ARGV[i], ARGV[i + 1]
  local value = redis.call('HGET', KEYS[1], field)
  if value then
    local expiry, used = string.match(value, '^(%d+):(%d+)$')
    if now - tonumber(used) >= tonumber(expiry) then
      for k = 2, #KEYS do pcall(redis.call, 'XGROUP', 'DESTROY', KEYS[k], group) end
      redis.call('HDEL', KEYS[1], field)
      gone[#gone + 1] = field
    end
  end
end
return gone
"""
)

_HEARTBEAT = """
local members = KEYS[1]
local me, lease = ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', members, now, me)
redis.call('ZREMRANGEBYSCORE', members, '-inf', now - lease)
redis.call('PEXPIRE', members, lease * 10)
local lost = {}
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], lease)
  else
    lost[#lost + 1] = KEYS[i]
  end
end
return {redis.call('ZRANGE', members, 0, -1), lost}
"""

_MEMBERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXPIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA-1, by which the server knows it once loaded."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


SCRIPTS = {
    s.name: s
    for s in (
        Script("publish", _PUBLISH),
        Script("schedule", _SCHEDULE),
        Script("release", _RELEASE),
        Script("seek", _SEEK),
        Script("give_back", _GIVE_BACK),
        Script("take_due", _TAKE_DUE),
        Script("reclaim", _RECLAIM),
        Script("heartbeat", _HEARTBEAT),
        Script("members", _MEMBERS),
        Script("take", _TAKE),
        Script("unlock", _UNLOCK),
        Script("expire", _EXPIRE),
        Script("touch", _TOUCH),
        Script("sweep", _SWEEP),
    )
}
