//! The Lua scripts that make each multi-step change atomic on the Redis server. Every script
//! touches only keys of one login, which share a hash tag: in a Redis Cluster they run in one
//! slot.

use std::sync::LazyLock;

use redis::Script;

/// Write a document: only while `ARGV[1]` holds the lease (`KEYS[2]`) and the stored generation
/// is `ARGV[2]` (0: none). Stores `ARGV[3]` as generation `ARGV[2] + 1`, and `ARGV[4]` as the
/// login's epoch if it has none. Answers `{1, new generation}`, `{0, "lease"}` when the lease is
/// someone else's or gone, `{0, stored generation}` when the generation moved.
pub(super) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {0, 'lease'} end
local generation = redis.call('HGET', KEYS[1], 'generation') or '0'
if generation ~= ARGV[2] then return {0, generation} end
local next = tostring(tonumber(generation) + 1)
redis.call('HSET', KEYS[1], 'generation', next, 'document', ARGV[3])
if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4])
end
return {1, next}
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
