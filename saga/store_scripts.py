"""The Lua scripts of the Redis event store (saga/store.py), and the layout they keep a
saga in. Each runs atomically on the keys of one saga's bucket (one slot on a Redis
Cluster): every key it touches is in its KEYS."""

from typing import Final

# Storage layout 2: a saga lives in one hash (its `state` key), so that one HMGET reads
# all an append checks and one HSET writes all it keeps:
#   v, state         its version and snapshot
#   e:<seq>          each event
#   a:<id>           each input it applied
#   outbox           its outbox: one line a command (OUTBOX_LINE), each with its JSON
#   t:<id>           each timer's data, once the timer is in the timers' index
# A saga stored before (its version in `version`, its events in a list, its applied ids
# in a set, its outbox in a hash) moves into it at its next append, but for its events,
# which stay in the list: the list holds the first ones, the hash those since. The
# version is `v` rather than `version` so that an engine of the earlier layout, started
# beside this one by mistake, finds no version in a saga of this one: its append is
# refused as a conflict rather than applying an input again or splitting the events.
#
# A command's timeout waits on the command's line of the outbox, not in the timers'
# index: most commands are answered within milliseconds, and the reply's append drops
# the line, timeout and all, in the HSET that writes the rest. The timeout joins the
# index (`promote`), at its own due time, when the command leaves the outbox unanswered
# (cleared once its publication was confirmed) or the relay takes the outbox up (after
# its grace: a crash, an outage). Only a timeout due far enough after its decision
# waits so (the relay's grace and two of its rounds: RedisSagaStore), so that the
# relay takes a left outbox up before its timeouts are due (unless an outage left more
# than a round takes); a shorter one, and a retry's timer, join the index at once.
#
# A line of the outbox: command id, the due time and id of the timeout waiting with it
# (empty if none), the command's JSON, the timeout's JSON, separated by tabs. JSON
# escapes tabs and line ends, so neither occurs in it. Positional, not a JSON object: the
# scripts split it with one pattern rather than decode and encode it on every append.
OUTBOX_LINE: Final = "{id}\t{due}\t{timer}\t{command}\t{timeout}"

# The outbox's lines as Lua: `lines` of an outbox field (or of none), `parse` a line
# into its parts, `line` one back, `promote` a
# line's waiting timeout into the saga's hash and the timers' index (unless there
# already), `earlier_lines`: the earlier layout's outbox hash as lines, and `hset_all`
# fields in pieces (Lua unpacks a few thousand values at most).
OUTBOX_LUA: Final = """
local function lines(outbox)
  return string.gmatch(outbox or '', '[^\\n]+')
end
local function parse(line)
  return string.match(line, '^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$')
end
local function line(id, due, timer, command, timeout)
  return id .. '\\t' .. due .. '\\t' .. timer .. '\\t' .. command .. '\\t' .. timeout
end
local function promote(state_key, timers_key, saga, due, timer, timeout)
  if timer == '' then return end
  redis.call('HSET', state_key, 't:' .. timer, timeout)
  redis.call('ZADD', timers_key, 'NX', due, saga .. '/' .. timer)
end
local function earlier_lines(outbox_key)
  local box, lines = redis.call('HGETALL', outbox_key), {}
  for i = 1, #box, 2 do lines[#lines + 1] = line(box[i], '', '', box[i + 1], '') end
  return lines
end
local function hset_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end
"""

# One atomic step per input: the saga's events, state, applied id and outbox, its
# timers, its outbox marker and its place in the indexes, all or nothing.
# KEYS, by name below: the saga's four keys (SagaKeys: the events, applied and outbox
# keys only for a saga of the earlier layout), then its bucket's indexes and those the
# saga's own entries are in (see RedisSagaStore._append_keys): all in the saga's bucket,
# so on a Redis Cluster one slot (saga/keyspace.py).
# ARGV[1]: the append as a JSON object, each field by name (see append_arguments):
#   expected_version  the version the decision was made on; version: the version after it
#   saga              the saga id
#   applied_id        the input's id (absent: none); record_applied: true to record it,
#                     false to check it only (a reply recorded, not applied)
#   end               absent while the saga runs; 'kept' when it ended for good and stays;
#                     else the time it ended: it joins the ended index, trimmed after
#                     the retention
#   failed            when it failed (absent: it did not): it joins the failed index
#   replayed          its creation time, when a replay takes it up again: it leaves the
#                     failed index and is running again (the active index)
#   marker            the outbox marker (a score)
#   created           when it was created: only in its start
#   definition        the definition version's field (`type:version`), which must not be
#                     closed in the bucket (being deleted) for the saga to start, nor, on
#                     one Redis (the last KEYS), missing from the applied definitions
#                     (absent: a built-in definition)
#   events            how many events; first: the first one's seq
#   answered          the id of the command the input is a reply to (absent: none): a
#                     reply proves it was published, so it leaves the outbox here, and
#                     the outbox's marker with it once the outbox is empty
#   commands          how many commands to put in the outbox
#   timers            [{due, id}]: the timers to put in the index (not those waiting
#                     with their commands), each's due time (a score) and id
#   cancelled         the ids of the timers to cancel
# ARGV[2...]: the texts to keep, as they are: the state, each event, each command's line
# of the outbox, and the JSON of each timer of `timers`. Each is an argument of its own
# rather than a string in ARGV[1]: escaping them into it and decoding them out of it cost
# a tenth more CPU per append, in the client and in Redis.
# The timers' index holds `<saga>/<timer id>`.
APPEND: Final = (
    OUTBOX_LUA
    + """
local state_key, events_key, applied_key, outbox_key, active_key, ended_key,
  outbox_index, timers_key, sagas_key, customer_key, definition_sagas_key, closed_key,
  failed_key, definitions_key = unpack(KEYS)
local a = cjson.decode(ARGV[1])
local saga = a.saga
local asked = {'v', 'version', 'outbox'}
if a.applied_id then asked[4] = 'a:' .. a.applied_id end
local read = redis.call('HMGET', state_key, unpack(asked))
if not read[1] and read[2] then
  -- Stored by an earlier engine: its version, applied ids and outbox move into the
  -- hash's fields of this layout, once (its events stay where they are).
  local fields = {'v', read[2], 'outbox', table.concat(earlier_lines(outbox_key), '\\n')}
  for _, id in ipairs(redis.call('SMEMBERS', applied_key)) do
    fields[#fields + 1], fields[#fields + 2] = 'a:' .. id, '1'
  end
  hset_all(state_key, fields)
  redis.call('HDEL', state_key, 'version')
  redis.call('DEL', applied_key, outbox_key)
  read = redis.call('HMGET', state_key, unpack(asked))
end
local current = tonumber(read[1] or '0')
if a.applied_id and read[4] then
  return {'duplicate', current}
end
if current ~= a.expected_version then
  return {'conflict', current}
end
if a.created and a.definition and (
    redis.call('SISMEMBER', closed_key, a.definition) == 1
    or (definitions_key and redis.call('HEXISTS', definitions_key, a.definition) == 0)) then
  return {'no_definition', current}
end
local fields = {'v', tostring(a.version), 'state', ARGV[2]}
local function keep(field, value)
  fields[#fields + 1], fields[#fields + 2] = field, value
end
if a.applied_id and a.record_applied then keep('a:' .. a.applied_id, '1') end
for i = 1, a.events do keep('e:' .. (a.first + i - 1), ARGV[2 + i]) end
local text = 3 + a.events
-- The outbox: the answered command's line goes; a line whose waiting timeout is
-- cancelled stays without it; the new commands' lines join.
local cancelling, waiting, box, changed, scores = {}, {}, {}, false, {}
local function schedule(id, due, data)
  keep('t:' .. id, data)
  scores[#scores + 1], scores[#scores + 2] = due, saga .. '/' .. id
end
for _, id in ipairs(a.cancelled) do cancelling[id] = true end
for entry in lines(read[3]) do
  local id, due, timer, command, timeout = parse(entry)
  if timer ~= '' then waiting[timer] = true end
  if id == a.answered then
    changed = true
    -- A timeout not cancelled (the reply was ignored: the step still waits) goes on.
    if timer ~= '' and not cancelling[timer] then schedule(timer, due, timeout) end
  elseif timer ~= '' and cancelling[timer] then
    box[#box + 1], changed = line(id, '', '', command, ''), true
  else
    box[#box + 1] = entry
  end
end
for i = 1, a.commands do box[#box + 1] = ARGV[text + i - 1] end
text = text + a.commands
if changed or a.commands > 0 then keep('outbox', table.concat(box, '\\n')) end
for i, timer in ipairs(a.timers) do schedule(timer.id, timer.due, ARGV[text + i - 1]) end
redis.call('HSET', state_key, unpack(fields))
-- A cancelled timer that waited with its command went with its line; one in the
-- index goes from there.
local gone, members = {}, {}
for _, id in ipairs(a.cancelled) do
  if not waiting[id] then
    gone[#gone + 1], members[#members + 1] = 't:' .. id, saga .. '/' .. id
  end
end
if #gone > 0 then redis.call('HDEL', state_key, unpack(gone)) end
if a.answered and #box == 0 then
  redis.call('ZREM', outbox_index, saga)
end
if a.commands > 0 then
  redis.call('ZADD', outbox_index, a.marker, saga)
end
if #scores > 0 then redis.call('ZADD', timers_key, unpack(scores)) end
if #members > 0 then redis.call('ZREM', timers_key, unpack(members)) end
if a.created then
  redis.call('ZADD', sagas_key, a.created, saga)
  redis.call('ZADD', customer_key, a.created, saga)
  if not a['end'] then
    redis.call('ZADD', active_key, a.created, saga)
  end
  redis.call('SADD', definition_sagas_key, saga)
end
if a.replayed then
  redis.call('ZREM', failed_key, saga)
  redis.call('ZADD', active_key, a.replayed, saga)
end
if a.failed then
  redis.call('ZADD', failed_key, a.failed, saga)
end
if a['end'] then
  redis.call('ZREM', active_key, saga)
  if a['end'] ~= 'kept' then
    redis.call('ZADD', ended_key, a['end'], saga)
    redis.call('SREM', definition_sagas_key, saga)
  end
end
return {'ok', a.version}
"""
)

# A saga's events, oldest first: those of the earlier layout in its list, the rest in
# its hash. KEYS: state, events list.
EVENTS: Final = """
local listed = redis.call('LRANGE', KEYS[2], 0, -1)
local read = redis.call('HMGET', KEYS[1], 'v', 'version')
local version = tonumber(read[1] or read[2] or '0')
local seq = #listed + 1
while seq <= version do
  local fields = {}
  for n = seq, math.min(seq + 999, version) do fields[#fields + 1] = 'e:' .. n end
  for _, event in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    if event then listed[#listed + 1] = event end
  end
  seq = seq + 1000
end
return listed
"""

# Claim due timers: push each one's score a lease into the future, so that no other
# orchestrator fires it meanwhile, and a claimer that dies lets it come due again.
# KEYS: the timers' index, the earlier layout's timer data. ARGV: now, now + lease, limit.
# Returns member, data, member, data...: a member `<saga>/<timer id>` has its data in the
# saga's hash, read after (false here); one of the earlier layout, a timer id, has it in
# the timer data; one whose data is gone (cancelled meanwhile) goes.
CLAIM_TIMERS: Final = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local claimed = {}
for _, member in ipairs(due) do
  local earlier, data = not string.find(member, '/', 1, true), false
  if earlier then data = redis.call('HGET', KEYS[2], member) end
  if data or not earlier then
    redis.call('ZADD', KEYS[1], ARGV[2], member)
    claimed[#claimed + 1] = member
    claimed[#claimed + 1] = data
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return claimed
"""

# Mark a saga's outbox as possibly holding commands, as of a marker.
# KEYS: the outbox index. ARGV: marker, saga id.
MARK_OUTBOX: Final = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Claim the outboxes left since before a cutoff: re-mark each as of now, so that no
# relay (this one's next round, or another orchestrator's) takes it again before the
# grace has passed once more, and a claimer that dies lets it come due again.
# KEYS: the outbox index. ARGV: cutoff, now, limit. Returns the saga ids.
CLAIM_OUTBOXES: Final = """
local left = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, saga in ipairs(left) do
  redis.call('ZADD', KEYS[1], ARGV[2], saga)
end
return left
"""

# The commands in a saga's outbox (and, for a saga of the earlier layout not appended
# to since, in its outbox hash). With ARGV[1] = 'take' (the relay, or a duplicate, about
# to publish them again: they have waited), the timeouts waiting with them join the
# timers' index first.
# KEYS: state, earlier outbox, the timers' index. ARGV: 'read' or 'take', saga id.
READ_OUTBOX: Final = (
    OUTBOX_LUA
    + """
local found, box, promoted = {}, {}, false
for entry in lines(redis.call('HGET', KEYS[1], 'outbox')) do
  local id, due, timer, command, timeout = parse(entry)
  found[#found + 1] = command
  if ARGV[1] == 'take' and timer ~= '' then
    promote(KEYS[1], KEYS[3], ARGV[2], due, timer, timeout)
    entry, promoted = line(id, '', '', command, ''), true
  end
  box[#box + 1] = entry
end
if promoted then
  redis.call('HSET', KEYS[1], 'outbox', table.concat(box, '\\n'))
end
for _, command in ipairs(redis.call('HVALS', KEYS[2])) do found[#found + 1] = command end
return found
"""
)

# Remove published commands from sagas' outboxes (their waiting timeouts join the
# timers' index: their replies are late); once a saga's outbox is empty, forget its
# outbox marker, unless somebody re-marked the saga since the marker was read. Commands
# already gone were taken out by the append of their replies, which saw to the marker.
# One call for the sagas of one bucket (one slot).
# KEYS: the outbox index, the timers' index, then each saga's state and earlier outbox.
# ARGV[1]: [[saga id, marker, [command ids]], ...] as JSON, in the order of KEYS.
CLEAR_OUTBOXES: Final = (
    OUTBOX_LUA
    + """
local function clear(state_key, outbox_key, saga, marker, ids)
  local read = redis.call('HMGET', state_key, 'outbox', 'v')
  local clearing, box, removed = {}, {}, 0
  for _, id in ipairs(ids) do clearing[id] = true end
  for entry in lines(read[1]) do
    local id, due, timer, command, timeout = parse(entry)
    if clearing[id] then
      removed = removed + 1
      promote(state_key, KEYS[2], saga, due, timer, timeout)
    else
      box[#box + 1] = entry
    end
  end
  if removed > 0 then
    redis.call('HSET', state_key, 'outbox', table.concat(box, '\\n'))
  end
  local earlier = not read[2]  -- no version of this layout: a saga of the earlier one
  if earlier and #ids > 0 then
    removed = removed + redis.call('HDEL', outbox_key, unpack(ids))
  end
  if #ids > 0 and removed == 0 then
    return
  end
  if #box == 0 and (not earlier or redis.call('HLEN', outbox_key) == 0)
      and redis.call('ZSCORE', KEYS[1], saga) == marker then
    redis.call('ZREM', KEYS[1], saga)
  end
end
for i, s in ipairs(cjson.decode(ARGV[1])) do
  clear(KEYS[1 + 2 * i], KEYS[2 + 2 * i], s[1], s[2], s[3])
end
return 0
"""
)
