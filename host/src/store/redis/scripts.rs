//! The Lua scripts that make each multi-step change atomic on the Redis server. Every script
//! touches only keys of one login, which share a hash tag: in a Redis Cluster they run in one
//! slot.

use std::sync::LazyLock;

use redis::Script;

/// Write a document: only while `ARGV[1]` holds the lease (`KEYS[2]`) and the stored generation
/// is `ARGV[2]` (0: none). Stores `ARGV[3]` as generation `ARGV[2] + 1`, and `ARGV[4]` as the
/// login's epoch if it has none or `ARGV[5]` is `new` (a login put in, not refreshed); the record
/// of the exchange (`KEYS[3]`) is spent with it.
/// Answers `{"1", new generation, epoch}`, `{"0", "lease"}` when the lease is someone else's or
/// gone, `{"0", stored generation}` when the generation moved.
pub(super) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'0', 'lease'} end
local generation = redis.call('HGET', KEYS[1], 'generation') or '0'
if generation ~= ARGV[2] then return {'0', generation} end
local next = tostring(tonumber(generation) + 1)
redis.call('HSET', KEYS[1], 'generation', next, 'document', ARGV[3])
redis.call('DEL', KEYS[3])
if ARGV[5] == 'new' or redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4])
end
return {'1', next, redis.call('HGET', KEYS[1], 'epoch')}
",
    )
});

/// Note, before a refresh request leaves, that `ARGV[1]` (the lease holder, `KEYS[2]`)
/// presents the refresh token whose digest is `ARGV[2]`, for the login at generation `ARGV[3]`
/// (in `KEYS[3]`), at `ARGV[4]` ms, in `KEYS[1]` (no expiry: no eviction policy takes it, and
/// it outlives the lease), and in the list of tokens presented, `KEYS[4]` (the last 64). A token
/// on that list stops the request — the login was brought back from before it was spent — and
/// so does another holder's note of the same token younger than `ARGV[5]` ms: its answer may
/// still come, and presenting the token twice revokes the login. The holder's own note (a
/// retry) passes. Answers `"ok"`, `"lease"` (not the lease's holder), `"generation"` (the login
/// moved), `"spent"`, or `"pending:<age ms>"`.
pub(super) static SPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease' end
if (redis.call('HGET', KEYS[3], 'generation') or '0') ~= ARGV[3] then return 'generation' end
local noted = redis.call('HMGET', KEYS[1], 'spent', 'owner', 'at', 'generation')
if noted[1] == ARGV[2] and noted[2] == ARGV[1] and noted[4] == ARGV[3] then return 'ok' end
if noted[1] == ARGV[2] and noted[4] == ARGV[3] then
  local age = tonumber(ARGV[4]) - tonumber(noted[3] or '0')
  if age < tonumber(ARGV[5]) then return 'pending:' .. tostring(age) end
elseif redis.call('LPOS', KEYS[4], ARGV[2]) then
  return 'spent'
end
redis.call('HSET', KEYS[1], 'spent', ARGV[2], 'owner', ARGV[1], 'at', ARGV[4], 'generation', ARGV[3])
redis.call('HDEL', KEYS[1], 'answer')
redis.call('LREM', KEYS[4], 0, ARGV[2])
redis.call('LPUSH', KEYS[4], ARGV[2])
redis.call('LTRIM', KEYS[4], 0, 63)
return 'ok'
",
    )
});

/// Keep the token endpoint's answer (`ARGV[2]`, sealed) in `KEYS[1]`, for the refresh `ARGV[1]`
/// noted (see [`SPEND`]) on the login at generation `ARGV[3]` (`KEYS[2]`): only while that note
/// is still its own and the login has not moved — not the lease, which may have been lost
/// meanwhile: the answer is the only future of the login either way. 1, else 0.
pub(super) static KEEP_ANSWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[2], 'generation') or '0') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'answer', ARGV[2])
return 1
",
    )
});

/// Extend the lease `KEYS[1]` to `ARGV[2]` ms if `ARGV[1]` holds it: 1, else 0.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Delete the lease `KEYS[1]` if `ARGV[1]` holds it: 1, else 0.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});
