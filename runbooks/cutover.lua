-- belt run cutover.lua <dc> [db] [-- key=value ...]
--
-- The cutover (the application's downtime window), for one database or every database of the dc
-- at once:
--   wait until forward lag < max_lag -> revoke-logins -> wait for application sessions to drain
--   (then terminate the rest, or fail) -> teardown-forward-replication (waits until dst has
--   applied everything src wrote) -> sync (sequences, PK-less tables, validation, constraints,
--   indexes, analyze) -> diff-sequences (dst at or past src, in the window) -> diff-schemas --full
--   -> report the downtime window.
-- If any step after revoke-logins fails (or Ctrl-C), logins are restored on src and the failure
-- is reported.
--
-- Every step records its start and end in each database's journal
-- (configs/<dc>/<db>/cutover.journal.json). If belt itself dies (SIGKILL, a closed laptop, a
-- dropped SSH session), run the same command again: each database continues from its own
-- step (finished steps are skipped, the interrupted one is redone; logins stay revoked
-- meanwhile, and `belt status` shows the step and this command). The downtime window counts
-- from the first revoke. A cutover that has finished says so when run again.
--
-- Options (after --):
--   max_lag=1048576       bytes of forward lag under which the cutover may start
--   lag_timeout=10m       how long to wait for the lag to get there
--   drain_timeout=2m      how long to wait for application sessions to end after revoke-logins
--   settle=250ms          how long "no sessions" must hold before the drain counts as done
--   terminate=true        terminate sessions still open after drain_timeout (false: fail instead)
--   gate_timeout=5m       how long teardown-forward-replication waits for dst to catch up
--   validate=true         run validate-data inside sync (false: --no validation is not offered;
--                         kept for symmetry, sync always validates)
--   diff=true             run diff-schemas --full at the end
--   confirm=false         ask before revoking logins (use --yes for unattended runs)
--   fence=nologin         how revoke-logins stops the application: nologin (pgbelt's ALTER ROLE
--                         NOLOGIN; refused when a role is also used by a database of the server
--                         outside this cutover), connect (REVOKE CONNECT on these databases
--                         only, and their sessions are terminated at once) or auto
--   lock_out_shared=false revoke LOGIN even from roles that other databases of the server use
local dc, db, opts = ...
local lib = belt.require_lib()
local o = lib.options("cutover.lua", opts, {
  max_lag = 1048576, lag_timeout = "10m", drain_timeout = "2m", settle = "250ms", terminate = true,
  gate_timeout = "5m", validate = true, diff = true, confirm = false, fence = "nologin", lock_out_shared = false,
})
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

-- Databases starting now need forward replication with little lag; interrupted ones are past
-- that (their logins are revoked; the gate in teardown-forward-replication waits for dst).
if #fresh > 0 then
  belt.log(("waiting for forward lag < %d bytes on %s"):format(o.max_lag, table.concat(fresh, ", ")))
  belt.wait_for(function()
    for _, r in ipairs(lib.records(belt.status(dc, fresh))) do
      if r.forward ~= "replicating" then
        if r.forward == "down" or r.forward == "unconfigured" then
          local msg = ("%s: forward replication is %s; cutover needs it replicating"):format(r.db, r.forward)
          local j = flow.j[r.db]
          if j and (j.state == "compensated" or j.state == "rolled_back") then
            msg = msg .. ("; the cutover run %d stopped in %s (%s) and logins went back to src, so src may have "
              .. "taken writes that dst lacks: start over with belt reset and belt run migrate.lua"):format(
              j.run, tostring(j.current_step), tostring(j.note))
          end
          error(belt.error("precondition_failed", msg))
        end
        return false
      end
      if r.lag_bytes == nil or r.lag_bytes > o.max_lag then return false end
    end
    return true
  end, { timeout = o.lag_timeout, interval = "1s", desc = "forward lag under max_lag" })
  if o.confirm then belt.confirm(("Cut over %s/%s now? Logins on src will be revoked."):format(dc, table.concat(fresh, ", "))) end
end

local active = {}
for _, name in ipairs(dbs) do
  if flow.j[name].state ~= "done" then active[#active + 1] = name end
end
belt.on_failure(function(err)
  belt.warn("cutover failed (" .. tostring(err) .. "); restoring logins on src")
  local ok, rerr = pcall(belt.restore_logins, dc, active)
  if not ok then belt.warn("restore-logins failed too: " .. tostring(rerr)) end
  local jok, jerr = pcall(flow.close, active, "compensated", "logins restored after: " .. tostring(err))
  if not jok then belt.warn("could not record the compensation in the journal: " .. tostring(jerr)) end
end)

-- revoke-logins saves the roles in the config before it revokes them; the journal keeps them too.
flow.step("revoke-logins", function(todo)
  return belt.revoke_logins(dc, todo, { fence = o.fence, lock_out_shared = o.lock_out_shared })
end, active, nil,
  function(r) return { revoked = r.revoked, saved_logins = r.saved_logins } end)
flow.step("drain", function(todo)
  lib.drain(dc, todo, "src", { timeout = o.drain_timeout, settle = o.settle, terminate = o.terminate })
end, active)
flow.step("teardown-forward-replication", function(todo)
  return belt.teardown_forward_replication(dc, todo, { timeout = o.gate_timeout })
end, active)
flow.step("sync", function(todo) return belt.sync(dc, todo) end, active)
-- Cheap, so inside the window: every sequence on dst at or past src (a mismatch fails the
-- cutover, and the compensation gives logins back to src).
flow.step("diff-sequences", function(todo) return belt.diff_sequences(dc, todo) end, active)

-- The downtime window of each database: from its first revoke to the end of its checks.
local downtime = {}
for _, name in ipairs(active) do
  local j = flow.j[name]
  local revoke, sync = lib.jstep(j, "revoke-logins"), lib.jstep(j, "diff-sequences")
  downtime[name] = (sync and sync.ended_epoch or 0) - (revoke and revoke.started_epoch or 0)
end
if o.diff then
  flow.step("diff-schemas", function(todo) return belt.diff_schemas(dc, todo, { full = true }) end, active)
end
for _, name in ipairs(active) do
  flow.close({ name }, "done", nil, { downtime_s = downtime[name] })
end

local steps = {}
for _, name in ipairs(active) do
  local j = flow.j[name]
  local resumed = false
  for _, s in ipairs(j.steps or {}) do if (s.attempts or 1) > 1 then resumed = true end end
  print(("%s/%s: cut over; downtime window %s (first revoke-logins to the end of diff-sequences%s)"):format(
    dc, name, lib.secs(downtime[name]), resumed and ", across an interruption" or ""))
  for _, s in ipairs(j.steps or {}) do
    local note = (s.attempts or 1) > 1 and ("  (%d attempts)"):format(s.attempts) or ""
    print(("  %-30s %s%s"):format(s.name, lib.secs(s.duration_s or 0), note))
    steps[#steps + 1] = { db = name, name = s.name, duration_s = s.duration_s, attempts = s.attempts }
  end
end
local total = 0
for _, d in pairs(downtime) do total = math.max(total, d) end
return { ok = true, command = "cutover", dc = dc, db = db, downtime_s = total, steps = steps, resumed = resuming, already_done = finished }
