"""The Lua scripts of the Redis store: each step that must be atomic on the server.

Long: a catalogue of small server-side programs, each with its contract beside it; split,
they would scatter the one key layout they share.

A key's data lives under BASE = PREFIX + "{" + STEM + "}" (one hash slot per key):
  BASE:lease:N    "JOB_ID FENCE", with the lease's TTL: slot N is held
  BASE:recs       hash N -> the holder's record; a record without its lease is stale
  BASE:fence      the fencing counter (see ACQUIRE)
  BASE:stop:N     a stop request for slot N's holder: "REASON JOB_ID SIGNAL KILL_AFTER"
  BASE:queue      sorted set of waiting job IDs, scored by arrival (BASE:qseq)
  BASE:waiters    hash job ID -> the waiter's record
  BASE:ticket:ID  a waiter's own lease, renewed while it waits
  BASE:retaken:N  the epoch in which slot N's holder re-took its lease (see _EPOCH)
  BASE:wake:ID    a list that waiter ID blocks on (BLPOP): it heads the queue and a slot may
                  be free; kept while its ticket lives, so no wake-up is lost
  BASE:adrift     hash job ID -> the record of a run that lost its lease and runs on
                  (--on-lease-lost continue), shown while BASE:adrift:ID lives (see ADRIFT)
PREFIX + "keys" is the set of stems, for `status`; PREFIX + "epoch" is the data's epoch
(see _EPOCH).
"""

from __future__ import annotations

NAMES = (
    *("ACQUIRE", "REGRANT", "PUBLISH", "RENEW", "RELEASE", "LEAVE", "INSPECT"),
    *("STOP", "CLEAN", "PRUNE", "FORGET", "HISTORY", "ADRIFT"),
)

# ARGV: base, slots, job_id, ttl_ms, waiting (0/1), record, stem, keys-set
# Returns {slot, fence, leftover record or false}, {-1} someone is ahead in the queue,
# {-2} every slot is held. A live waiter at the head of the queue goes first, also before a
# newcomer that does not wait (which then conflicts), as on the other stores; the heads of
# dead waiters (no ticket) are dropped on the way.
# The fence is max(counter + 1, server time in microseconds): strictly increasing per key,
# and still above every earlier token after the server lost its data (unless its clock
# went back, or more than a million grants a second were made).
_NEXT_FENCE = """
local function next_fence(base)
  local t = redis.call('TIME')
  local now = t[1] .. string.format('%06d', tonumber(t[2]))
  local fence_key = base .. ':fence'
  local current = redis.call('GET', fence_key)
  if not current or tonumber(current) < tonumber(now) then
    redis.call('SET', fence_key, now)
  end
  redis.call('INCR', fence_key)
  redis.call('PEXPIRE', fence_key, 2592000000)  -- 30 days unused: the clock carries on
  return redis.call('GET', fence_key)  -- as text: Lua's numbers print as 1.7e+15
end
"""

# Wakes the first waiter whose ticket lives: the only one a free slot can go to next (the
# others sleep on, polling at most every third of their TTL), so that a release costs a
# few commands however long the queue (issue 21). Dead ones before it: ACQUIRE drops them.
_WAKE = """
local function wake(base, why)
  for _, id in ipairs(redis.call('ZRANGE', base .. ':queue', 0, -1)) do
    local ttl = redis.call('PTTL', base .. ':ticket:' .. id)
    if ttl ~= -2 then
      local list = base .. ':wake:' .. id
      redis.call('DEL', list)
      redis.call('RPUSH', list, why)
      redis.call('PEXPIRE', list, math.max(ttl, 1000))
      return
    end
  end
end
"""

# Nothing of a key is kept for ever (issue 18.7): once it has no record and no queue, its
# stem leaves the keys set (`status` still lists it from the history while it is recent),
# and its counters expire after 30 days unused.
_UNLIST = """
local function unlist(base, keys, stem)
  if redis.call('EXISTS', base .. ':recs', base .. ':queue', base .. ':adrift') == 0 then
    redis.call('SREM', keys, stem)
  end
end
"""

# A record longer than record.MAX_SIZE is no record singlerun wrote: it is returned as ''
# (corrupt), so that one forged giant cannot make every reply too large to read.
_SIZED = """
local function sized(rec)
  if rec and #rec > 65536 then return '' end
  return rec
end
"""

# After a server lost its data (a restart without persistence, a failover to a replica),
# a holder from before may still run its job: its lease is gone with the data. A live
# holder re-asserts its lease at its next renewal (RENEW); grants wait GRACE (3 s) from the
# start of a new epoch so that it can, and once one has, a lease TTL (the longest of the
# asker's and the re-asserters'), so that a holder that could not (frozen, cut off) has
# stopped its job by then. A new epoch is a server with another run_id (it restarted:
# counted from its start) or another replication ID (a replica promoted: counted from
# now, the first instant known to be after it). A brand-new server looks the same: its
# first grant waits at most GRACE. `epoch(key)` returns now, since, lost (as ms / ms / 0-1).
_EPOCH = """
local function epoch(key)
  local info = redis.call('INFO', 'server')
  local run = string.match(info, 'run_id:(%x+)') or '?'
  local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)') or '0')
  local replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or '?'
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local e = redis.call('HMGET', key, 'run', 'replid', 'since')
  if e[1] == run and e[2] == replid and tonumber(e[3]) then return now, tonumber(e[3]) end
  local since = now - up * 1000
  if e[2] and e[2] ~= replid then since = now end
  redis.call('DEL', key)
  redis.call('HSET', key, 'run', run, 'replid', replid, 'since', since)
  return now, since
end
"""

# ARGV: base, slots, job_id, ttl_ms, waiting (0/1), record, stem, keys-set, epoch key,
# grace_ms, place, holder record. Returns as above, or {-3, ms to wait, 1 if a holder
# re-asserted a lease}. The holder record ('' : the record) is what a grant publishes: one
# that names the job forked ahead, its "token":"" filled in with the fence (issue 21).
# A waiter's ask is also its place in the queue (one request a wake-up, issue 21): it joins
# the queue at `place` ('' the first time: a new place), or keeps the place it has, which
# it also gets back after its ticket expired (paused, cut off) or the server lost its data
# (later arrivals still queue behind it); its ticket is renewed, a wake-up sent before this
# look is spent, and a refusal ends with the place (as text).
ACQUIRE = (
    _NEXT_FENCE
    + _EPOCH
    + _SIZED
    + _WAKE
    + """
local base, slots, me, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local waiting = ARGV[5] == '1'
redis.call('SADD', ARGV[8], ARGV[7])
local place = ''
local function refuse(reply)
  if waiting then table.insert(reply, place) end
  return reply
end
if waiting then
  local score = redis.call('ZSCORE', base .. ':queue', me)
  if not score then
    if ARGV[11] == '' then
      score = redis.call('INCR', base .. ':qseq')
    else
      score = tonumber(ARGV[11])
      if tonumber(redis.call('GET', base .. ':qseq') or '0') < score then
        redis.call('SET', base .. ':qseq', score)
      end
    end
    redis.call('PEXPIRE', base .. ':qseq', 2592000000)
    redis.call('ZADD', base .. ':queue', score, me)
  end
  place = tostring(score)
  redis.call('HSET', base .. ':waiters', me, ARGV[6])
  redis.call('SET', base .. ':ticket:' .. me, '1', 'PX', ttl)
  redis.call('DEL', base .. ':wake:' .. me)
end
while true do
  local head = redis.call('ZRANGE', base .. ':queue', 0, 0)[1]
  if not head or head == me then break end
  if redis.call('EXISTS', base .. ':ticket:' .. head) == 1 then return refuse({-1}) end
  redis.call('ZREM', base .. ':queue', head)
  redis.call('HDEL', base .. ':waiters', head)
end
for slot = 0, slots - 1 do
  local lease = base .. ':lease:' .. slot
  if redis.call('EXISTS', lease) == 0 then
    local now, since = epoch(ARGV[9])
    local wait = since + tonumber(ARGV[10]) - now
    local lost = tonumber(redis.call('HGET', ARGV[9], 'ttl') or '0')
    if lost > 0 then wait = math.max(wait, since + math.max(ttl, lost) - now) end
    -- A slot whose holder re-took it in this epoch (and let go since) is known to be free.
    local known = redis.call('GET', base .. ':retaken:' .. slot) == tostring(since)
    if wait > 0 and not known then return refuse({-3, wait, lost > 0 and 1 or 0}) end
    local fence = next_fence(base)
    redis.call('SET', lease, me .. ' ' .. fence, 'PX', ttl)
    local left = sized(redis.call('HGET', base .. ':recs', slot))
    local rec, at = ARGV[6], string.find(ARGV[12], '"token":""', 1, true)
    if at then
      rec = string.sub(ARGV[12], 1, at + 8) .. fence .. string.sub(ARGV[12], at + 9)
    end
    redis.call('HSET', base .. ':recs', slot, rec)
    redis.call('DEL', base .. ':stop:' .. slot)
    if waiting then
      redis.call('ZREM', base .. ':queue', me)
      redis.call('HDEL', base .. ':waiters', me)
      redis.call('DEL', base .. ':ticket:' .. me)
      -- The next waiter heads the queue now: woken only if a slot is left for it.
      for other = slot + 1, slots - 1 do
        if redis.call('EXISTS', base .. ':lease:' .. other) == 0 then
          wake(base, 'moved')
          break
        end
      end
    end
    return {slot, fence, left or false}
  end
end
return refuse({-2})
"""
)

# ARGV: base, slot, lease value, new job_id. A new fencing token for the next attempt of a
# --retry/--respawn run, on the lease it keeps (TTL unchanged). Returns the token or false.
REGRANT = (
    _NEXT_FENCE
    + """
local lease = ARGV[1] .. ':lease:' .. ARGV[2]
if redis.call('GET', lease) ~= ARGV[3] then return false end
local fence = next_fence(ARGV[1])
redis.call('SET', lease, ARGV[4] .. ' ' .. fence, 'KEEPTTL')
return fence
"""
)

# ARGV: base, slot, lease value, record. Rewrites the record if the lease is still ours.
PUBLISH = """
if redis.call('GET', ARGV[1] .. ':lease:' .. ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', ARGV[1] .. ':recs', ARGV[2], ARGV[4])
return 1
"""

# ARGV: base, slot, lease value, ttl_ms, epoch key, stem, keys-set. Returns {1 renewed |
# 2 re-asserted | 0 not ours, stop request}. PEXPIRE to the fixed TTL (never adding to
# it), only if the lease is still ours. A lease that is gone (the server lost its data)
# is set again, and the epoch notes it (see _EPOCH): no grant is made meanwhile.
RENEW = (
    _EPOCH
    + """
local lease = ARGV[1] .. ':lease:' .. ARGV[2]
local stop = redis.call('GET', ARGV[1] .. ':stop:' .. ARGV[2]) or false
local value = redis.call('GET', lease)
if not value then
  local _, since = epoch(ARGV[5])
  redis.call('SET', ARGV[1] .. ':retaken:' .. ARGV[2], since, 'PX', 86400000)
  local lost = tonumber(redis.call('HGET', ARGV[5], 'ttl') or '0')
  redis.call('HSET', ARGV[5], 'ttl', math.max(lost, tonumber(ARGV[4])))
  redis.call('SET', lease, ARGV[3], 'PX', ARGV[4])
  redis.call('SADD', ARGV[7], ARGV[6])
  return {2, stop}
end
if value ~= ARGV[3] then return {0, stop} end
redis.call('PEXPIRE', lease, ARGV[4])
return {1, stop}
"""
)

# ARGV: base, slot, lease value, job_id, keys-set, stem. Compare-and-delete; the record
# goes if it is ours. Returns 1 released, 0 the lease was no longer ours (lost in the run).
RELEASE = (
    _UNLIST
    + _WAKE
    + """
local base, slot = ARGV[1], ARGV[2]
local ours = redis.call('GET', base .. ':lease:' .. slot) == ARGV[3]
if ours then redis.call('DEL', base .. ':lease:' .. slot) end
local rec = redis.call('HGET', base .. ':recs', slot)
if rec and string.find(rec, '"job_id":"' .. ARGV[4] .. '"', 1, true) then
  redis.call('HDEL', base .. ':recs', slot)
end
-- A stop request is ours to drop only with our lease: else it may be the next holder's.
if ours then redis.call('DEL', base .. ':stop:' .. slot) end
redis.call('HDEL', base .. ':adrift', ARGV[4])
redis.call('DEL', base .. ':adrift:' .. ARGV[4])
wake(base, 'released')
unlist(base, ARGV[5], ARGV[6])
if ours then return 1 end
return 0
"""
)

# ARGV: base, job_id, keys-set, stem. Leaves the queue and wakes the others.
LEAVE = (
    _UNLIST
    + _WAKE
    + """
redis.call('ZREM', ARGV[1] .. ':queue', ARGV[2])
redis.call('HDEL', ARGV[1] .. ':waiters', ARGV[2])
redis.call('DEL', ARGV[1] .. ':ticket:' .. ARGV[2], ARGV[1] .. ':wake:' .. ARGV[2])
wake(ARGV[1], 'left')
unlist(ARGV[1], ARGV[3], ARGV[4])
return 1
"""
)

# ARGV: base. Returns {held slots, their records, stale slots, their records, live waiters'
# records in queue order, records of live runs adrift}.
INSPECT = (
    _SIZED
    + """
local base = ARGV[1]
local recs = redis.call('HGETALL', base .. ':recs')
local held, held_recs, stale, stale_recs = {}, {}, {}, {}
for i = 1, #recs, 2 do
  if redis.call('EXISTS', base .. ':lease:' .. recs[i]) == 1 then
    table.insert(held, recs[i]); table.insert(held_recs, sized(recs[i + 1]))
  else
    table.insert(stale, recs[i]); table.insert(stale_recs, sized(recs[i + 1]))
  end
end
local waiters = {}
for _, id in ipairs(redis.call('ZRANGE', base .. ':queue', 0, -1)) do
  if redis.call('EXISTS', base .. ':ticket:' .. id) == 1 then
    table.insert(waiters, sized(redis.call('HGET', base .. ':waiters', id)) or '')
  end
end
local adrift, runs = {}, redis.call('HGETALL', base .. ':adrift')
for i = 1, #runs, 2 do
  if redis.call('EXISTS', base .. ':adrift:' .. runs[i]) == 1 then
    table.insert(adrift, sized(runs[i + 1]))
  end
end
return {held, held_recs, stale, stale_recs, waiters, adrift}
"""
)

# ARGV: base, job_id, ttl_ms, record, stem, keys-set. The run `job_id` lost its lease and
# its job runs on (--on-lease-lost continue): `status` shows it for ttl_ms, and the run
# says so again every tick until its RELEASE. It holds no slot: grants ignore it.
ADRIFT = """
redis.call('SADD', ARGV[6], ARGV[5])
redis.call('HSET', ARGV[1] .. ':adrift', ARGV[2], ARGV[4])
redis.call('SET', ARGV[1] .. ':adrift:' .. ARGV[2], '1', 'PX', ARGV[3])
return 1
"""

# ARGV: base, slot, job_id, request. A stop request for the holder named, if it holds.
STOP = """
local lease = redis.call('GET', ARGV[1] .. ':lease:' .. ARGV[2])
if not lease or string.sub(lease, 1, #ARGV[3] + 1) ~= ARGV[3] .. ' ' then return 0 end
redis.call('SET', ARGV[1] .. ':stop:' .. ARGV[2], ARGV[4], 'PX', 600000)
return 1
"""

# ARGV: base, slot, dry_run (0/1), keys-set, stem. Removes slot's record if its lease is
# gone; returns it.
CLEAN = (
    _SIZED
    + _UNLIST
    + """
local base, slot = ARGV[1], ARGV[2]
if redis.call('EXISTS', base .. ':lease:' .. slot) == 1 then return false end
local rec = redis.call('HGET', base .. ':recs', slot)
if rec and ARGV[3] == '0' then
  redis.call('HDEL', base .. ':recs', slot)
  unlist(base, ARGV[4], ARGV[5])
end
return sized(rec) or false
"""
)

# ARGV: base, keys-set, stem. Drops the queue entries of waiters that died (their ticket
# has expired); returns how many. A waiter ahead of a live one is dropped by it; this is
# for the rest.
PRUNE = (
    _UNLIST
    + """
local base, n = ARGV[1], 0
for _, id in ipairs(redis.call('ZRANGE', base .. ':queue', 0, -1)) do
  if redis.call('EXISTS', base .. ':ticket:' .. id) == 0 then
    redis.call('ZREM', base .. ':queue', id)
    redis.call('HDEL', base .. ':waiters', id)
    n = n + 1
  end
end
for _, id in ipairs(redis.call('HKEYS', base .. ':adrift')) do
  if redis.call('EXISTS', base .. ':adrift:' .. id) == 0 then
    redis.call('HDEL', base .. ':adrift', id)
  end
end
unlist(base, ARGV[2], ARGV[3])
return n
"""
)

# ARGV: base, stem, keys-set, dry_run (0/1), max slots. Forgets an idle key (`clean --idle`):
# 0 if a slot is leased or a waiter lives, else 1 after removing its records, queue and
# fencing counter (the next token still rises: it is at least the server's time in µs).
FORGET = """
local base, slots = ARGV[1], tonumber(ARGV[5])
for slot = 0, slots - 1 do
  if redis.call('EXISTS', base .. ':lease:' .. slot) == 1 then return 0 end
end
for _, id in ipairs(redis.call('ZRANGE', base .. ':queue', 0, -1)) do
  if redis.call('EXISTS', base .. ':ticket:' .. id) == 1 then return 0 end
end
for _, id in ipairs(redis.call('HKEYS', base .. ':adrift')) do
  if redis.call('EXISTS', base .. ':adrift:' .. id) == 1 then return 0 end
end
if ARGV[4] == '1' then return 1 end
redis.call('DEL', base .. ':recs', base .. ':fence', base .. ':queue', base .. ':waiters',
  base .. ':qseq', base .. ':adrift')
for slot = 0, slots - 1 do redis.call('DEL', base .. ':stop:' .. slot) end
redis.call('SREM', ARGV[3], ARGV[2])
return 1
"""

# ARGV: stream, max ID ('+' or '(ID'), count. Returns {ID, journal line} pairs, newest
# first; a line no singlerun writes (over twice record.MAX_SIZE: it holds a command line)
# comes back as ''.
HISTORY = """
local out = {}
for _, entry in ipairs(redis.call('XREVRANGE', ARGV[1], ARGV[2], '-', 'COUNT', ARGV[3])) do
  local line = ''
  for i = 1, #entry[2], 2 do
    if entry[2][i] == 'run' and #entry[2][i + 1] <= 131072 then line = entry[2][i + 1] end
  end
  table.insert(out, {entry[1], line})
end
return out
"""
