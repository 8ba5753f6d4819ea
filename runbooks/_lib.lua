-- Helpers shared by the shipped flow runbooks (loaded with belt.require_lib()).
local lib = {}

--- The per-database records of a result (one record for a single db).
function lib.records(r)
  if type(r) == "table" and r.databases then return r.databases end
  return { r }
end

--- Raises a step_failed error naming the failed databases when r.ok is false.
function lib.must(r, step)
  if type(r) == "table" and r.ok == false then
    local why = {}
    for _, rec in ipairs(lib.records(r)) do
      if rec.ok == false then
        local msg = rec.error and rec.error.message or rec.message or "failed"
        why[#why + 1] = tostring(rec.db) .. ": " .. msg
      end
    end
    error(belt.error("step_failed", step .. " failed: " .. table.concat(why, "; ")), 2)
  end
  return r
end

--- Checks that opts only has known keys and fills defaults.
function lib.options(name, opts, defaults)
  opts = opts or {}
  local out = {}
  for k, v in pairs(opts) do
    if k ~= "args" then
      if defaults[k] == nil then
        local valid = {}
        for dk in pairs(defaults) do valid[#valid + 1] = dk end
        table.sort(valid)
        error(belt.error("bad_argument", ("%s: unknown option '%s' (valid: %s)"):format(name, k, table.concat(valid, ", "))), 3)
      end
      out[k] = v
    end
  end
  for k, v in pairs(defaults) do if out[k] == nil then out[k] = v end end
  return out
end

--- Waits for the application sessions on `side` ("src" or "dst") of dc/db to end after a
--- revoke. "None" only counts when it holds twice, `o.settle` apart: a login that passed its
--- check just before the revoke shows up a moment later, and its writes would miss the
--- replication target taken next. After `o.timeout`, terminates the sessions (again, until
--- none are left), or raises a timeout error when `o.terminate` is false.
function lib.drain(dc, db, side, o)
  local function open_sessions()
    local n = 0
    for _, r in ipairs(lib.records(belt.connections(dc, db))) do n = n + (r[side .. "_count"] or 0) end
    return n
  end
  local function none_left()
    if open_sessions() > 0 then return false end
    belt.sleep(o.settle)
    return open_sessions() == 0
  end
  local desc = "application sessions on " .. side .. " to end"
  if belt.wait_for(none_left, { timeout = o.timeout, interval = "200ms", desc = desc, on_timeout = "return" }) then
    return
  end
  if o.terminate == false then
    error(belt.error("timeout", ("application sessions still open on %s after drain_timeout; rerun with terminate=true or stop them"):format(side)), 2)
  end
  belt.wait_for(function()
    if none_left() then return true end
    local t = lib.must(belt.terminate_connections(dc, db, { reverse = side == "dst" }), "terminate-connections on " .. side)
    for _, r in ipairs(lib.records(t)) do
      if (r.terminated or 0) > 0 then
        belt.warn(("%s: terminated %d session(s) on %s"):format(tostring(r.db), r.terminated, side))
      end
    end
    return false
  end, { timeout = "1m", interval = "200ms", desc = "terminated " .. desc })
end

--- Formats seconds.
function lib.secs(s) return ("%.1f s"):format(s) end

return lib
