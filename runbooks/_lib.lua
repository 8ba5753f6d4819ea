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

--- Formats seconds.
function lib.secs(s) return ("%.1f s"):format(s) end

return lib
