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

--- The declared options of the shipped flow runbooks (runbooks/_options.lua): name -> list of
--- {key, default, help}.
lib.declared = assert(load(belt._runbook_source("_options.lua"), "@runbooks/_options.lua", "t"))()

--- Checks that opts only has keys that `name` declares (the prelude's check, so the wording is
--- belt's) and fills in the declared defaults. `decl` defaults to the shipped declaration of
--- `name` (an operator's runbook passes its own list of {key, default, help}, or, as before,
--- a table {key = default}). `args` (the words after `--` that are not key=value) is always
--- allowed.
function lib.options(name, opts, decl)
  decl = decl or assert(lib.declared[name], "no declared options for " .. tostring(name))
  local defaults = {}
  if #decl == 0 then
    for k, v in pairs(decl) do defaults[k] = v end
  end
  for _, d in ipairs(decl) do defaults[d[1]] = d[2] end
  local out = {}
  for k, v in pairs(opts or {}) do if k ~= "args" then out[k] = v end end
  belt._check_keys(name, out, defaults)
  for k, v in pairs(defaults) do if out[k] == nil then out[k] = v end end
  return out
end

--- The options of a shipped flow runbook as help text (nil when it declares none).
function lib.options_help(name)
  local decl = lib.declared[name]
  if not decl then return nil end
  local width = 0
  for _, d in ipairs(decl) do width = math.max(width, #d[1] + #tostring(d[2]) + 1) end
  local lines = { ("OPTIONS OF %s (after --, as key=value):"):format(name) }
  local indent = (" "):rep(width + 4)
  for _, d in ipairs(decl) do
    local kv = d[1] .. "=" .. tostring(d[2])
    local line = ("  %s%s  "):format(kv, (" "):rep(width - #kv))
    for word in d[3]:gmatch("%S+") do
      if #line + #word > 99 and #line > #indent then
        lines[#lines + 1] = line
        line = indent
      end
      line = line .. ((line == indent or line:sub(-1) == " ") and "" or " ") .. word
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n") .. "\n"
end

--- The names of the shipped runbooks that declare options, sorted.
function lib.flows()
  local names = {}
  for name in pairs(lib.declared) do names[#names + 1] = name end
  table.sort(names)
  return names
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

--- A journaled flow (`flow`: "cutover", "rollback", or a custom runbook's name) over the
--- databases `dbs` of dc. Each step records its start and end in every database's journal
--- (beside the config: belt.journal, belt.journal_begin, belt.journal_end), so running the
--- same command again skips the steps a database has finished and redoes the interrupted one
--- (operations inside a step add what a resume needs: the gate's LSN target, the PK-less
--- tables copied). `flow.j[db]` is each database's journal as last read. With `lock`, the
--- flow's lock of every database is taken first: a second belt running the same flow on the
--- same database is refused before it changes anything.
function lib.flow(dc, dbs, flow, run_data, lock)
  local f = { dc = dc, dbs = dbs, name = flow, run_data = run_data or {}, j = {} }
  local function by_db(r)
    local out = {}
    for _, rec in ipairs(lib.records(r)) do if type(rec) == "table" and rec.db then out[rec.db] = rec end end
    return out
  end
  function f.refresh(list, take_lock)
    list = list or f.dbs
    if #list == 0 then return end
    local r = lib.must(belt.journal(dc, list, { flow = flow, lock = take_lock or nil }), "journal")
    for name, rec in pairs(by_db(r)) do f.j[name] = rec end
  end
  --- The databases (of `list`, default all) whose run in progress does not have `step` done
  --- (a database without a run in progress starts a new one: every step is pending).
  function f.pending(step, list)
    local out = {}
    for _, name in ipairs(list or f.dbs) do
      local j = f.j[name]
      if j.state ~= "in_progress" or (j.step_status or {})[step] ~= "done" then out[#out + 1] = name end
    end
    return out
  end
  --- Runs `fn(todo)` for the databases of `list` (default all) that have not finished `step`,
  --- between journal_begin (with `data`) and journal_end (with `keep(record)` of each
  --- database's record, when given). Returns fn's result and `failed`, {db = why} of the
  --- databases whose record failed (marked failed in their journal); nil when every database
  --- had finished the step. An error raised by fn is raised again.
  function f.step_each(step, fn, list, data, keep)
    local todo = f.pending(step, list)
    if #todo == 0 then return nil, {} end
    local started = belt.now()
    lib.must(belt.journal_begin(dc, todo, { flow = flow, step = step, data = data, run_data = f.run_data }), "journal " .. step)
    local ok, r = pcall(fn, todo)
    if not ok then
      if not (type(r) == "table" and r.code == "interrupted") then
        pcall(belt.journal_end, dc, todo, { flow = flow, step = step, status = "failed", error = tostring(r) })
      end
      error(r, 0)
    end
    local recs = by_db(r or {})
    local done, failed, names = {}, {}, {}
    for _, name in ipairs(todo) do
      local rec = recs[name]
      if rec and rec.ok == false then
        failed[name] = rec.error and rec.error.message or rec.message or "failed"
        names[#names + 1] = name
      else
        done[#done + 1] = name
      end
    end
    if #done > 0 and keep then
      for _, name in ipairs(done) do
        lib.must(belt.journal_end(dc, name, { flow = flow, step = step, data = recs[name] and keep(recs[name]) or nil }), "journal " .. step)
      end
    elseif #done > 0 then
      lib.must(belt.journal_end(dc, done, { flow = flow, step = step }), "journal " .. step)
    end
    for _, name in ipairs(names) do
      pcall(belt.journal_end, dc, name, { flow = flow, step = step, status = "failed", error = step .. " failed: " .. failed[name] })
    end
    f.refresh(todo)
    if #done > 0 then belt.log(("%s done in %s"):format(step, lib.secs(belt.now() - started))) end
    return r, failed
  end
  --- f.step_each, raising step_failed (naming each failed database) when any failed.
  function f.step(step, fn, list, data, keep)
    local r = f.step_each(step, fn, list, data, keep)
    return r and lib.must(r, step)
  end
  --- Ends the run of the databases of `list` (state done, compensated or rolled_back).
  function f.close(list, state, note, run_data)
    if #list == 0 then return end
    lib.must(belt.journal_close(dc, list, { flow = flow, state = state, note = note, run_data = run_data }), "journal close")
    f.refresh(list)
  end
  f.refresh(nil, lock)
  return f
end

--- The step record of a journal, or nil.
function lib.jstep(j, name)
  for _, s in ipairs(j.steps or {}) do if s.name == name then return s end end
  return nil
end

--- Formats seconds.
function lib.secs(s) return ("%.1f s"):format(s) end

return lib
