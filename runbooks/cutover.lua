-- belt run cutover.lua <dc> [db] [-- key=value ...]
--
-- The cutover (the application's downtime window), for one database or every database of the dc
-- at once:
--   wait until forward lag < max_lag -> forward healthy (no schema drift) -> revoke-logins -> wait for application sessions to drain
--   (then terminate the rest, or fail) -> teardown-forward-replication (waits until dst has
--   applied everything src wrote) -> sync (sequences, PK-less tables, validation, constraints,
--   indexes, analyze) -> diff-sequences (dst at or past src, in the window) -> refresh-matviews
--   (after the window; a failure is a warning) -> diff-schemas --full -> report the downtime window.
-- If any step after revoke-logins up to diff-sequences fails for a database, that database's
-- logins are restored on src and its failure is reported; the other databases go on to the end
-- (exit 1 if any failed). Ctrl-C, or an error for the whole run, restores the logins of every
-- database still in its window. After diff-sequences (with switch=pgbouncer: after the RESUME)
-- nothing is switched back: a failure there (diff-schemas) is reported, and running the same
-- command again finishes it. A database whose forward replication is gone is reported and left
-- out; the others go on.
-- restore-logins keeps NOLOGIN on a role that a database still fenced on the server uses.
--
-- Every step records its start and end in each database's journal
-- (configs/<dc>/<db>/cutover.journal.json). If belt itself dies (SIGKILL, a closed laptop, a
-- dropped SSH session), run the same command again: each database continues from its own
-- step (finished steps are skipped, the interrupted one is redone; logins stay revoked
-- meanwhile, and `belt status` shows the step and this command). The downtime window counts
-- from the first revoke. A cutover that has finished says so when run again.
--
-- Options (after --, as key=value): declared once in runbooks/_options.lua, with their defaults
-- and help; `belt run cutover.lua --help` lists them.
--
-- switch=pgbouncer (each pair's config has a "pgbouncer" block with a databases_file):
--   check that pgbouncer maps the database to src -> PAUSE it (transactions in flight finish,
--   new ones wait) -> revoke-logins and terminate the sessions left on src (pgbouncer's idle
--   server connections and anything that bypasses pgbouncer; drain_timeout defaults to 0s) ->
--   gate, sync, diff-sequences as above -> rewrite its databases_file line to dst and RELOAD ->
--   RESUME. The application waits for the pause instead of failing. If a step fails, or the
--   pause outlasts pause_timeout, pgbouncer is pointed back at src, logins are restored, and the
--   database is resumed: the application carries on against src. After a crash, run the same
--   command again: it continues from the journal (with a new pause_timeout) and always ends
--   with the database resumed.
--   If belt dies while pgbouncer is paused and nobody reruns it, the watchdog it started before
--   the PAUSE (a detached `belt _pgbouncer-watchdog` process, its own session) acts once the
--   pause has lasted pause_timeout + 2 s: repoint begun -> it finishes the switch and RESUMEs at
--   dst (a rerun then finishes the cutover); earlier -> pgbouncer back at src, logins restored,
--   RESUME, journal "compensated by the watchdog" (a rerun starts a new cutover, or says to start
--   over when forward replication was already torn down). Its log: cutover.watchdog.log beside
--   the config. It dies with the operator's host: set pgbouncer's query_wait_timeout (above
--   pause_timeout) as the last resort there.
local dc, db, opts = ...
local lib = belt.require_lib()
local o = lib.options("cutover.lua", opts)
local accept_diff = {}
for name in tostring(o.accept_diff):gmatch("[^;]+") do
  local n = name:match("^%s*(.-)%s*$")
  if n ~= "" then accept_diff[#accept_diff + 1] = n end
end
if o.switch ~= "none" and o.switch ~= "pgbouncer" then
  error(belt.error("bad_argument", ("cutover.lua: switch=%s: none or pgbouncer expected"):format(tostring(o.switch))))
end
local bouncer = o.switch == "pgbouncer"
if o.drain_timeout == "auto" then o.drain_timeout = bouncer and "0s" or "2m" end
local dbs = db and { db } or belt.dbs(dc)
local command = belt.flags.command or ("belt run cutover.lua " .. dc .. (db and (" " .. db) or ""))
local flow = lib.flow(dc, dbs, "cutover", { command = command }, true)

-- Where each database stands: finished, interrupted (resume it), or not started.
local finished, resuming, fresh = {}, {}, {}
for _, name in ipairs(dbs) do
  local j = flow.j[name]
  if j.state == "done" then
    finished[#finished + 1] = name
    print(("%s/%s: the cutover finished at %s (downtime window %s); nothing to do"):format(
      dc, name, tostring(j.finished_at), lib.secs((j.data or {}).downtime_s or 0)))
  elseif j.state == "in_progress" then
    resuming[#resuming + 1] = name
    belt.log(("%s: resuming the cutover interrupted in %s (run %d, started %s)"):format(
      name, tostring(j.current_step), j.run, tostring(j.started_at)))
  else
    fresh[#fresh + 1] = name
  end
end
if #resuming + #fresh == 0 then
  return { ok = true, command = "cutover", dc = dc, db = db, already_done = finished }
end

-- An interrupted database whose src logins were given back meanwhile (a compensation cut
-- short, or restore-logins by hand; the config's login_fence says restored) may be taking
-- writes on src again: before the gate, the fence goes up again and the drain is redone
-- (below); from the gate on, src may have writes that dst lacks.
local refence = {}
for _, name in ipairs(resuming) do
  local j = flow.j[name]
  local fence = belt.config(dc, name).login_fence
  local st = j.step_status or {}
  if st["revoke-logins"] == "done" and type(fence) == "table" and fence.restored == true then
    if st["teardown-forward-replication"] then
      error(belt.error("precondition_failed", ("%s: src logins were given back while the cutover was interrupted in %s, "
        .. "after forward replication was being torn down, so src may have taken writes that dst lacks: start over with "
        .. "belt reset and belt run migrate.lua"):format(name, tostring(j.current_step))))
    end
    refence[#refence + 1] = name
  end
end

-- switch=pgbouncer: before anything changes, pgbouncer must be reachable, send each database
-- starting now to src, not be paused, and let clients wait longer than pause_timeout.
if bouncer and #fresh > 0 then
  for _, r in ipairs(lib.records(lib.must(belt.pgbouncer_show(dc, fresh), "pgbouncer-show"))) do
    local where = ("%s: pgbouncer database %s"):format(r.db, tostring(r.database))
    if r.points_to ~= "src" then
      error(belt.error("precondition_failed", ("%s points at %s:%s/%s (%s), not at src; switch=pgbouncer starts from src"):format(
        where, tostring(r.host), tostring(r.port), tostring(r.target_db), tostring(r.points_to))))
    end
    if r.paused then
      error(belt.error("precondition_failed", where .. " is already paused (another switch in progress?); RESUME it first"))
    end
    if r.databases_file_problem then
      error(belt.error("precondition_failed", where .. ": " .. r.databases_file_problem))
    end
    local qwt = r.query_wait_timeout_s
    if qwt and qwt > 0 and belt.duration(o.pause_timeout) >= qwt then
      error(belt.error("bad_argument", ("%s: pause_timeout=%s is not below pgbouncer's query_wait_timeout (%d s): clients would get errors before the pause ends"):format(
        r.db, tostring(o.pause_timeout), qwt)))
    end
  end
end

-- What failed, per database ({db, step, error[, message]}): reported at the end (exit 1).
local failures = {}

-- Databases starting now need forward replication with little lag; interrupted ones are past
-- that (their logins are revoked; the gate in teardown-forward-replication waits for dst).
local function not_replicating(r)
  local msg = ("%s: forward replication is %s%s; cutover needs it replicating"):format(
    r.db, r.forward, r.forward_error and (" (" .. tostring(r.forward_error) .. ")") or "")
  local j = flow.j[r.db]
  if j and (j.state == "compensated" or j.state == "rolled_back") then
    msg = msg .. ("; the cutover run %d stopped in %s (%s) and logins went back to src, so src may have "
      .. "taken writes that dst lacks: start over with belt reset and belt run migrate.lua"):format(
      j.run, tostring(j.current_step), tostring(j.note))
  end
  return msg
end
-- Schema drift between src and dst (status compares the published tables' columns, the set of
-- published tables and enum labels) stops the cutover before anything changes: dst would not
-- have what src has once the application is switched, and a drift that breaks the apply would
-- hold the gate.
local function drifted(r)
  if r.schema_drift and #r.schema_drift > 0 then
    error(belt.error("precondition_failed", ("%s: schema drift between src and dst: %s; mend it (belt apply-ddl %s %s --dst-only --sql ...) "
      .. "before the cutover; nothing was revoked"):format(r.db, table.concat(r.schema_drift, "; "), dc, r.db)))
  end
end
local skipped = {}
if #fresh > 0 then
  -- A database whose forward replication is gone cannot start; the others go on without it.
  local broken, rest = {}, {}
  for _, r in ipairs(lib.records(belt.status(dc, fresh))) do
    if r.forward == "down" or r.forward == "unconfigured" then
      broken[#broken + 1] = not_replicating(r)
      skipped[r.db] = true
      failures[#failures + 1] = { db = r.db, step = "start", error = broken[#broken], message = broken[#broken] }
    end
  end
  for _, name in ipairs(fresh) do if not skipped[name] then rest[#rest + 1] = name end end
  if #broken > 0 and #rest + #resuming == 0 then
    error(belt.error("precondition_failed", table.concat(broken, "; ")))
  end
  for _, msg in ipairs(broken) do belt.warn(msg .. "; the other databases go on") end
  fresh = rest
end
if #fresh > 0 then
  belt.log(("waiting for forward lag < %d bytes on %s"):format(o.max_lag, table.concat(fresh, ", ")))
  belt.wait_for(function()
    for _, r in ipairs(lib.records(belt.status(dc, fresh))) do
      -- status itself failed (a server does not answer): say so now, not after lag_timeout.
      lib.must(r, "status of " .. tostring(r.db))
      if r.forward ~= "replicating" then
        if r.forward == "down" or r.forward == "unconfigured" then
          error(belt.error("precondition_failed", not_replicating(r)))
        end
        return false
      end
      drifted(r)
      if r.lag_bytes == nil or r.lag_bytes > o.max_lag then return false end
    end
    return true
  end, { timeout = o.lag_timeout, interval = "1s", desc = "forward lag under max_lag" })
  if o.confirm then belt.confirm(("Cut over %s/%s now? Logins on src will be revoked."):format(dc, table.concat(fresh, ", "))) end
  -- Right before the fence: forward replication must be healthy (apply worker running and
  -- settled, no schema drift), or nothing is revoked or paused and the application is untouched.
  -- A worker that merely restarted gets up to health_timeout to settle; one that keeps failing,
  -- or a drift, stops the cutover here.
  local last = {}
  local healthy = belt.wait_for(function()
    for _, r in ipairs(lib.records(belt.status(dc, fresh))) do
      lib.must(r, "status of " .. tostring(r.db))
      if r.forward == "down" or r.forward == "unconfigured" then
        error(belt.error("precondition_failed", not_replicating(r) .. "; nothing was revoked"))
      end
      drifted(r)
      if r.forward_healthy ~= true then last[r.db] = r.forward_unhealthy or r.forward; return false end
      last[r.db] = nil
    end
    return true
  end, { timeout = o.health_timeout, interval = "1s", desc = "forward replication healthy", on_timeout = "return" })
  if not healthy then
    local why = {}
    for name, msg in pairs(last) do why[#why + 1] = ("%s: %s"):format(name, tostring(msg)) end
    table.sort(why)
    error(belt.error("precondition_failed", ("%s for %s; nothing was revoked"):format(table.concat(why, "; "), tostring(o.health_timeout))))
  end
end

local active = {}
for _, name in ipairs(dbs) do
  if flow.j[name].state ~= "done" and not skipped[name] then active[#active + 1] = name end
end
-- Databases past the point of compensation: resumed at dst (switch=pgbouncer), or through
-- diff-sequences (dst holds everything src had, checked; giving src its logins back now would
-- only force a reset and a new migration). A later failure (diff-schemas, Ctrl-C) leaves them
-- as they are, and running the same command again finishes them.
local window_end = bouncer and "pgbouncer-resume" or "diff-sequences"
local past = bouncer and "after traffic was switched to dst" or "after the window ended (dst holds all of src's data)"
local switched = {}
for _, name in ipairs(active) do
  if ((flow.j[name].step_status or {})[window_end]) == "done" then switched[name] = true end
end
-- Gives the databases of `back` their logins on src again (with switch=pgbouncer: pgbouncer
-- back at src first, then RESUME) and records the run as compensated.
local function compensate(back, err)
  belt.warn(("%s: cutover failed (%s); restoring logins on src%s"):format(
    table.concat(back, ", "), tostring(err), bouncer and " and resuming pgbouncer at src" or ""))
  if bouncer then
    -- pgbouncer goes back to src before anything lets traffic through.
    for _, name in ipairs(back) do
      local ok, perr = pcall(function()
        if belt.pgbouncer_show(dc, name).points_to ~= "src" then belt.pgbouncer_point_to(dc, name, { side = "src" }) end
      end)
      if not ok then belt.warn(name .. ": could not point pgbouncer back at src: " .. tostring(perr)) end
    end
  end
  local ok, rerr = pcall(belt.restore_logins, dc, back)
  if not ok then belt.warn("restore-logins failed too: " .. tostring(rerr)) end
  if bouncer then
    local rok, rserr = pcall(function() lib.must(belt.pgbouncer_resume(dc, back), "pgbouncer-resume") end)
    if not rok then
      local by_hand = {}
      for _, name in ipairs(back) do by_hand[#by_hand + 1] = ("belt pgbouncer-resume %s %s"):format(dc, name) end
      belt.warn("RESUME in pgbouncer failed: " .. tostring(rserr) .. "; resume it by hand: " .. table.concat(by_hand, "; "))
    end
  end
  local jok, jerr = pcall(flow.close, back, "compensated", "logins restored after: " .. tostring(err))
  if not jok then belt.warn("could not record the compensation in the journal: " .. tostring(jerr)) end
end
-- An error for the whole run (Ctrl-C, a raised error) compensates every database still under way.
belt.on_failure(function(err)
  local back = {}
  for _, name in ipairs(active) do if not switched[name] then back[#back + 1] = name end end
  if #back == 0 then
    belt.warn("cutover failed " .. past .. " (" .. tostring(err) .. "); nothing is switched back; run the same command again to finish")
    return
  end
  compensate(back, err)
end)

-- Each database cuts over on its own: one whose step fails is compensated alone, leaves
-- `active`, and the others go on (design.md: one database's failure does not stop the others).
local function cut(step, fn, keep)
  local r, failed = flow.step_each(step, fn, active, nil, keep)
  local names = {}
  for _, name in ipairs(active) do if failed[name] then names[#names + 1] = name end end
  if #names == 0 then return r end
  local rest = {}
  for _, name in ipairs(active) do if not failed[name] then rest[#rest + 1] = name end end
  active = rest
  for _, name in ipairs(names) do
    failures[#failures + 1] = { db = name, step = step, error = failed[name] }
    if switched[name] then
      belt.warn(("%s: %s failed %s (%s); nothing is switched back"):format(name, step, past, failed[name]))
    else
      compensate({ name }, step .. " failed: " .. failed[name])
    end
  end
  return r
end

-- switch=pgbouncer: the pause is bounded by pause_timeout, from the PAUSE (from the start of
-- this run when it resumes an interrupted one: the operator's re-run gets a full budget).
local pause_deadline = belt.now() + belt.duration(o.pause_timeout)
local function pause_left(next_step)
  if not bouncer then return nil end
  local left = pause_deadline - belt.now()
  if left <= 0 then
    error(belt.error("timeout", ("the pgbouncer pause outlasted pause_timeout=%s before %s"):format(tostring(o.pause_timeout), next_step)))
  end
  return left
end
-- The pgbouncer watchdog (one detached process per database still to switch, started before
-- the PAUSE, and again by a rerun with the rerun's deadline): if belt dies while pgbouncer is
-- paused, it resumes it once the pause outlasts pause_timeout (+2 s): at dst when the repoint
-- had begun, else at src with the logins restored (runbooks/_pgbouncer-watchdog.lua). It exits
-- by itself when the run ends. Without one (it could not start) the cutover goes on, warned.
if bouncer then
  local watched = {}
  for _, name in ipairs(active) do if not switched[name] then watched[#watched + 1] = name end end
  if #watched > 0 then
    local wok, werr = pcall(function()
      lib.must(belt.pgbouncer_watchdog(dc, watched, { timeout = math.max(pause_deadline - belt.now(), 0) }), "pgbouncer-watchdog")
    end)
    if not wok then
      belt.warn("no pgbouncer watchdog (" .. tostring(werr) .. "): if belt dies while pgbouncer is paused, only its query_wait_timeout ends the wait")
    end
  end
end
if bouncer then
  cut("pgbouncer-pause", function(todo)
    return belt.pgbouncer_pause(dc, todo, { timeout = o.pause_timeout })
  end)
end

if #refence > 0 then
  belt.warn(("%s: src logins were given back while the cutover was interrupted; revoking them again and draining"):format(
    table.concat(refence, ", ")))
  pause_left("revoke-logins")
  lib.must(belt.revoke_logins(dc, refence, { fence = o.fence, lock_out_shared = o.lock_out_shared }), "revoke-logins")
  local t = belt.duration(o.drain_timeout)
  if bouncer then t = math.min(t, pause_left("drain")) end
  lib.drain(dc, refence, "src", { timeout = t, settle = o.settle, terminate = o.terminate })
end
-- revoke-logins saves the roles in the config before it revokes them; the journal keeps them too.
cut("revoke-logins", function(todo)
  pause_left("revoke-logins")
  return belt.revoke_logins(dc, todo, { fence = o.fence, lock_out_shared = o.lock_out_shared })
end, function(r) return { revoked = r.revoked, saved_logins = r.saved_logins } end)
cut("drain", function(todo)
  local t = belt.duration(o.drain_timeout)
  if bouncer then t = math.min(t, pause_left("drain")) end
  lib.drain(dc, todo, "src", { timeout = t, settle = o.settle, terminate = o.terminate })
end)
cut("teardown-forward-replication", function(todo)
  local t, limit = belt.duration(o.gate_timeout), "gate_timeout"
  local left = pause_left("teardown-forward-replication")
  if left and left < t then t, limit = left, "pause_timeout" end
  local r = belt.teardown_forward_replication(dc, todo, { timeout = t })
  if limit == "pause_timeout" and type(r) == "table" and r.ok == false then
    belt.warn(("the gate had what was left of pause_timeout=%s (%.1f s)"):format(tostring(o.pause_timeout), t))
  end
  return r
end)
cut("sync", function(todo) pause_left("sync"); return belt.sync(dc, todo) end)
-- Cheap, so inside the window: every sequence on dst at or past src (a mismatch fails the
-- cutover, and the compensation gives logins back to src).
cut("diff-sequences", function(todo) pause_left("diff-sequences"); return belt.diff_sequences(dc, todo) end)
if not bouncer then
  for _, name in ipairs(active) do switched[name] = true end
end
if bouncer then
  cut("pgbouncer-point-to-dst", function(todo)
    pause_left("pgbouncer-point-to-dst")
    return belt.pgbouncer_point_to(dc, todo, { side = "dst" })
  end)
  cut("pgbouncer-resume", function(todo) return belt.pgbouncer_resume(dc, todo) end)
  for _, name in ipairs(active) do switched[name] = true end
end

-- Materialized views (after the window, outside the downtime): dst's were created WITH NO DATA;
-- each is refreshed, in dependency order, timed and printed. A failure is a warning, never a
-- failure of the cutover; `belt refresh-matviews DC DB` retries (safe to run again).
local matview_warnings = {}
if o.refresh_matviews then
  flow.step_each("refresh-matviews", function(todo)
    local out = {}
    local ok, r = pcall(belt.refresh_matviews, dc, todo)
    if not ok and type(r) == "table" and r.code == "interrupted" then error(r, 0) end
    for _, name in ipairs(todo) do out[name] = { db = name, ok = true, warnings = {}, failed_views = {} } end
    for _, rec in ipairs(ok and lib.records(r) or {}) do
      local d = type(rec) == "table" and out[rec.db]
      if d then
        for _, v in ipairs(rec.matviews or {}) do
          print(("%s/%s: materialized view %s %s in %.3f s%s"):format(dc, rec.db, v.name, v.status, v.duration_s or 0,
            v.error and (": " .. tostring(v.error)) or ""))
          if v.status ~= "refreshed" then d.failed_views[#d.failed_views + 1] = { name = v.name, error = v.error } end
        end
        d.refreshed = rec.refreshed
        if rec.ok == false then
          d.warnings[#d.warnings + 1] = (rec.error and rec.error.message) or rec.message or "refresh-matviews failed"
        end
      end
    end
    for _, name in ipairs(todo) do
      if not ok then out[name].warnings[1] = "refresh-matviews failed: " .. tostring(r) end
      if #out[name].warnings > 0 then
        local w = ("%s: materialized views not all refreshed (%s); the cutover stands: fix dst and run belt refresh-matviews %s %s"):format(
          name, table.concat(out[name].warnings, "; "), dc, name)
        matview_warnings[name] = { w }
        belt.warn(w)
      end
    end
    local list = {}
    for _, name in ipairs(todo) do list[#list + 1] = out[name] end
    return { databases = list }
  end, active, nil, function(rec)
    return { refreshed = rec.refreshed, failed_views = rec.failed_views, warnings = rec.warnings }
  end)
end

-- The downtime window of each database: from its first revoke to the end of its checks, or
-- with switch=pgbouncer from the PAUSE to the RESUME.
local first, last = "revoke-logins", "diff-sequences"
if bouncer then first, last = "pgbouncer-pause", "pgbouncer-resume" end
local downtime = {}
for _, name in ipairs(active) do
  local j = flow.j[name]
  local a, b = lib.jstep(j, first), lib.jstep(j, last)
  downtime[name] = (b and b.ended_epoch or 0) - (a and a.started_epoch or 0)
end
-- Differences each database stopped on, for the way to finish (kept in its journal for status).
local differences = {}
local accepted = {}
if o.diff then
  local r = cut("diff-schemas", function(todo) return belt.diff_schemas(dc, todo, { full = true, accept = accept_diff }) end,
    function(rec) return { accepted_differences = rec.accepted } end)
  for _, rec in ipairs(lib.records(r or {})) do
    if type(rec) == "table" and rec.db then
      if rec.ok == false and rec.unaccepted and #rec.unaccepted > 0 then
        differences[rec.db] = rec.unaccepted
        pcall(belt.journal_end, dc, rec.db, { flow = "cutover", step = "diff-schemas", status = "failed",
          error = "schemas differ in: " .. table.concat(rec.unaccepted, "; "), data = { differences = rec.unaccepted } })
      elseif rec.ok ~= false and rec.accepted and #rec.accepted > 0 then
        accepted[rec.db] = rec.accepted
      end
    end
  end
end
for _, name in ipairs(active) do
  flow.close({ name }, "done", nil, { downtime_s = downtime[name], accepted_differences = accepted[name] })
  if accepted[name] then
    belt.warn(("%s/%s: cut over with schema difference(s) accepted: %s"):format(dc, name, table.concat(accepted[name], "; ")))
  end
end

local steps = {}
for _, name in ipairs(active) do
  local j = flow.j[name]
  local resumed = false
  for _, s in ipairs(j.steps or {}) do if (s.attempts or 1) > 1 then resumed = true end end
  if bouncer then
    print(("%s/%s: cut over through pgbouncer; traffic paused %s (PAUSE to RESUME%s), now served by dst"):format(
      dc, name, lib.secs(downtime[name]), resumed and ", across an interruption" or ""))
  else
    print(("%s/%s: cut over; downtime window %s (first revoke-logins to the end of diff-sequences%s)"):format(
      dc, name, lib.secs(downtime[name]), resumed and ", across an interruption" or ""))
  end
  for _, s in ipairs(j.steps or {}) do
    local note = (s.attempts or 1) > 1 and ("  (%d attempts)"):format(s.attempts) or ""
    print(("  %-30s %s%s"):format(s.name, lib.secs(s.duration_s or 0), note))
    steps[#steps + 1] = { db = name, name = s.name, duration_s = s.duration_s, attempts = s.attempts }
  end
end
local total = 0
for _, d in pairs(downtime) do total = math.max(total, d) end
-- One record per database of this run: belt prints the failed ones and exits 1.
local records = {}
for _, name in ipairs(active) do
  records[#records + 1] = { dc = dc, db = name, ok = true, downtime_s = downtime[name], warnings = matview_warnings[name] }
end
for _, f in ipairs(failures) do
  local msg = f.message or ("cutover failed in %s (%s); %s"):format(f.step, f.error, switched[f.db]
    and "nothing switched back: run the same command again to finish" or "src logins restored")
  if f.step == "diff-schemas" and differences[f.db] and not f.message then
    local again = command:find(" %-%- ") and command or (command .. " --")
    msg = ("cutover failed in diff-schemas: schemas differ in %s; all data has moved and nothing is switched back. "
      .. "Fix dst and run the same command again to finish, or, to keep dst as it is, finish with the differences accepted: "
      .. "%s accept_diff='%s'"):format(table.concat(differences[f.db], "; "),
        db and again or again:gsub("cutover%.lua (%S+)", "cutover.lua %1 " .. f.db, 1), table.concat(differences[f.db], ";"))
  end
  records[#records + 1] = { dc = dc, db = f.db, ok = false, step = f.step, error = { code = "step_failed", message = msg } }
end
local warnings = {}
for _, name in ipairs(active) do for _, w in ipairs(matview_warnings[name] or {}) do warnings[#warnings + 1] = w end end
return { ok = #failures == 0, command = "cutover", dc = dc, db = db, switch = o.switch, downtime_s = total, steps = steps,
  resumed = resuming, already_done = finished, failed = failures, databases = records, warnings = warnings }
