-- belt run cutover.lua <dc> [db] [-- key=value ...]
--
-- The cutover (the application's downtime window), for one database or every database of the dc
-- at once:
--   wait until forward lag < max_lag -> revoke-logins -> wait for application sessions to drain
--   (then terminate the rest, or fail) -> teardown-forward-replication (waits until dst has
--   applied everything src wrote) -> sync (sequences, PK-less tables, validation, constraints,
--   indexes, analyze) -> diff-schemas --full -> report the downtime window.
-- If any step after revoke-logins fails, logins are restored on src and the failure is reported.
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
local target = db or "(all dbs)"

belt.log(("waiting for forward lag < %d bytes on %s"):format(o.max_lag, target))
belt.wait_for(function()
  for _, r in ipairs(lib.records(belt.status(dc, db))) do
    if r.forward ~= "replicating" then
      if r.forward == "down" or r.forward == "unconfigured" then
        error(belt.error("precondition_failed", ("%s: forward replication is %s; cutover needs it replicating"):format(r.db, r.forward)))
      end
      return false
    end
    if r.lag_bytes == nil or r.lag_bytes > o.max_lag then return false end
  end
  return true
end, { timeout = o.lag_timeout, interval = "1s", desc = "forward lag under max_lag" })

if o.confirm then belt.confirm(("Cut over %s/%s now? Logins on src will be revoked."):format(dc, target)) end

local t0 = belt.now()
local steps = {}
local function step(name, fn)
  local s = belt.now()
  local r = fn()
  steps[#steps + 1] = { name = name, duration_s = belt.now() - s }
  belt.log(("%s done in %s"):format(name, lib.secs(belt.now() - s)))
  return r
end

step("revoke-logins", function()
  return lib.must(belt.revoke_logins(dc, db, { fence = o.fence, lock_out_shared = o.lock_out_shared }), "revoke-logins")
end)
belt.on_failure(function(err)
  belt.warn("cutover failed (" .. tostring(err) .. "); restoring logins on src")
  local ok, rerr = pcall(belt.restore_logins, dc, db)
  if not ok then belt.warn("restore-logins failed too: " .. tostring(rerr)) end
end)

step("drain", function()
  lib.drain(dc, db, "src", { timeout = o.drain_timeout, settle = o.settle, terminate = o.terminate })
end)

step("teardown-forward-replication", function()
  return lib.must(belt.teardown_forward_replication(dc, db, { timeout = o.gate_timeout }), "teardown-forward-replication")
end)
local sync = step("sync", function() return lib.must(belt.sync(dc, db), "sync") end)
local downtime = belt.now() - t0
if o.diff then
  step("diff-schemas --full", function() return lib.must(belt.diff_schemas(dc, db, { full = true }), "diff-schemas --full") end)
end

for _, r in ipairs(lib.records(sync)) do
  print(("%s/%s: cut over; downtime window %s (revoke-logins to end of sync)"):format(dc, tostring(r.db), lib.secs(downtime)))
end
for _, s in ipairs(steps) do print(("  %-30s %s"):format(s.name, lib.secs(s.duration_s))) end
return { ok = true, command = "cutover", dc = dc, db = db, downtime_s = downtime, steps = steps }
