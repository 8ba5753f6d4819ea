-- belt prelude: builds the public `belt` table on top of the Swift primitives in belt._core.
-- It checks arguments, rejects unknown option keys (a typo such as `timout=` is an error),
-- parses durations and provides the scripting helpers (wait_for, retry, on_failure).
-- What each public belt.* function does for scripts is documented once, in LuaDocs.swift
-- (`belt help-lua`, runbooks/belt.meta.lua); the comments here are about how.
local core, specs, msghandler = _belt_core, _belt_specs, _belt_msghandler
_belt_core, _belt_specs, _belt_msghandler = nil, nil, nil

belt = { _core = core, _specs = specs }

local function raise(code, msg, level)
  error(core.make_error(code, msg), (level or 1) + 1)
end
belt.error = function(code, msg) return core.make_error(code, msg) end
belt.is_error = core.is_error

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = tostring(k) end
  table.sort(ks)
  return ks
end

--- Raises bad_argument unless every key of the table opts is a key of `allowed`. The message
--- is `what` followed by the unknown key and the valid ones.
local function check_keys(what, opts, allowed)
  for k in pairs(opts) do
    if type(k) ~= "string" or allowed[k] == nil then
      local valid = sorted_keys(allowed)
      raise("bad_argument", ("%s (unknown option '%s'; valid options: %s)"):format(
        what, tostring(k), #valid > 0 and table.concat(valid, ", ") or "none"))
    end
  end
end
belt._check_keys = check_keys

--- Checks that opts is nil or a table whose keys are all in `allowed` (name -> type).
local function check_opts(fname, argn, opts, allowed)
  if opts == nil then return {} end
  local what = ("bad argument #%d to 'belt.%s'"):format(argn, fname)
  if type(opts) ~= "table" then
    raise("bad_argument", ("%s (table or nil expected, got %s)"):format(what, type(opts)))
  end
  check_keys(what, opts, allowed)
  return opts
end

for name, spec in pairs(specs) do
  local fn = core[name]
  belt[name] = function(dc, db, opts)
    if type(dc) ~= "string" then
      raise("bad_argument", ("bad argument #1 to 'belt.%s' (dc: string expected, got %s)"):format(name, type(dc)), 2)
    end
    if db ~= nil and type(db) ~= "string" and type(db) ~= "table" then
      raise("bad_argument", ("bad argument #2 to 'belt.%s' (db: string, list of strings or nil expected, got %s)"):format(name, type(db)), 2)
    end
    if db == nil and not spec.all_dbs then
      raise("bad_argument", ("bad argument #2 to 'belt.%s' (db: a database name is required)"):format(name), 2)
    end
    opts = check_opts(name, 3, opts, spec.options)
    return fn(dc, db, opts)
  end
end

belt.sleep = core.sleep
belt.now = core.now
belt.duration = core.duration
belt.dbs = core.dbs
belt.config = core.config
belt.query = core.query
belt.confirm = core.confirm
belt.interrupted = core.interrupted
belt.flags = core.flags()

local exec_opts = core.exec_options()
function belt.exec(argv, opts)
  if type(argv) ~= "table" then
    raise("bad_argument", ("bad argument #1 to 'belt.exec' (argv: list of strings expected, got %s)"):format(type(argv)), 2)
  end
  return core.exec(argv, check_opts("exec", 2, opts, exec_opts))
end

--- Joins the arguments with tostring, as Lua's print does.
local function joined(sep, ...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  return table.concat(t, sep)
end
function belt.log(...) core.log("notice", joined(" ", ...)) end
function belt.info(...) core.log("info", joined(" ", ...)) end
function belt.warn(...) core.log("warning", joined(" ", ...)) end
function print(...) core.write(joined("\t", ...) .. "\n") end

function belt.wait_for(pred, opts)
  if type(pred) ~= "function" then
    raise("bad_argument", "bad argument #1 to 'belt.wait_for' (function expected, got " .. type(pred) .. ")", 2)
  end
  opts = check_opts("wait_for", 2, opts, { timeout = "duration", interval = "duration", desc = "string", on_timeout = "string" })
  local timeout = core.duration(opts.timeout or "10m")
  local interval = core.duration(opts.interval or "2s")
  local desc = opts.desc or "condition"
  local start = core.now()
  while true do
    local v = pred()
    if v then return v end
    local elapsed = core.now() - start
    if elapsed >= timeout then
      if opts.on_timeout == "return" then return false, "timeout" end
      raise("timeout", ("timed out after %.1f s waiting for %s"):format(elapsed, desc), 2)
    end
    core.sleep(math.min(interval, timeout - elapsed))
  end
end

function belt.retry(fn, opts)
  if type(fn) ~= "function" then
    raise("bad_argument", "bad argument #1 to 'belt.retry' (function expected, got " .. type(fn) .. ")", 2)
  end
  opts = check_opts("retry", 2, opts, { attempts = "int", backoff = "duration", only_retryable = "bool" })
  local attempts = opts.attempts or 3
  local backoff = core.duration(opts.backoff or "1s")
  local last
  for i = 1, attempts do
    local r = table.pack(pcall(fn, i))
    if r[1] then return table.unpack(r, 2, r.n) end
    last = r[2]
    if type(last) == "table" and last.code == "interrupted" then error(last, 0) end
    if opts.only_retryable and not (type(last) == "table" and last.retryable) then error(last, 0) end
    if i < attempts then
      belt.warn(("attempt %d/%d failed: %s; retrying in %.1f s"):format(i, attempts, tostring(last), backoff))
      core.sleep(backoff)
      backoff = backoff * 2
    end
  end
  error(last, 0)
end

belt._hooks = {}
function belt.on_failure(fn)
  if type(fn) ~= "function" then
    raise("bad_argument", "bad argument #1 to 'belt.on_failure' (function expected, got " .. type(fn) .. ")", 2)
  end
  local hooks = belt._hooks
  hooks[#hooks + 1] = fn
  local idx = #hooks
  return function() hooks[idx] = false end
end

belt._runbook_source = core.runbook_source

--- Loads the shared helpers of the shipped runbooks (runbooks/_lib.lua).
local lib_cache
function belt.require_lib()
  if not lib_cache then
    lib_cache = assert(load(core.runbook_source("_lib.lua"), "@runbooks/_lib.lua", "t"))()
  end
  return lib_cache
end

--- Runs a script body with compensation hooks: used by the runbook runner. The hooks get the
--- error as a table with its traceback and position (the shim's message handler).
function belt._run_with_hooks(body, ...)
  local r = table.pack(xpcall(body, msghandler, ...))
  if r[1] then return table.unpack(r, 2, r.n) end
  local err = r[2]
  local hooks = belt._hooks
  -- Compensation must be able to run after Ctrl-C; a further Ctrl-C interrupts it.
  core.clear_interrupt()
  for i = #hooks, 1, -1 do
    if hooks[i] then
      local ok, herr = pcall(hooks[i], err)
      if not ok then belt.warn("compensation hook failed: " .. tostring(herr)) end
    end
  end
  error(err, 0)
end
