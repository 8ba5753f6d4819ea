-- The options of the shipped flow runbooks, declared once: each is {key, default, help}, in the
-- order `belt run NAME --help` (and `belt help-lua`) shows them. lib.options checks a run's
-- `-- key=value` arguments against these keys and fills in these defaults.
return {
  ["migrate.lua"] = {
    { "schema", true, "load the schema on dst during setup (false: it is already there)" },
    { "replicate_timeout", "30m", "how long to wait for the initial copy to finish" },
    { "interval", "2s", "how often progress is polled" },
    { "skip_precheck", false, "go on even if precheck reports problems" },
    { "accept_logged_secrets", false, "go on although a root user cannot keep the replication user's password out of the server's log (not a superuser; precheck names it)" },
    { "copy", "", "who copies the initial data on the native engine: belt (parallel, resumable table by table) or engine (the subscription's own copy); empty: the config's initial_copy, else belt" },
    { "copy_jobs", 0, "parallel COPY sessions of belt's initial copy; 0: the config's copy_jobs, else 4 bounded by --jobs" },
    { "copy_split_mb", 0, "tables bigger than this many MB are copied by belt as ctid ranges in parallel; 0: the config's copy_split_mb, else 256" },
    { "index_jobs", 0, "indexes built at once by create-indexes (and after belt's initial copy); 0: the config's index_jobs, else 4 bounded by --jobs" },
  },
  ["cutover.lua"] = {
    { "max_lag", 1048576, "bytes of forward lag under which the cutover may start" },
    { "lag_timeout", "10m", "how long to wait for the lag to get there" },
    { "drain_timeout", "auto", "how long to wait for application sessions to end after revoke-logins; auto: 2m, or 0s with switch=pgbouncer" },
    { "settle", "250ms", "how long \"no sessions\" must hold before the drain counts as done" },
    { "terminate", true, "terminate sessions still open after drain_timeout (false: fail instead)" },
    { "gate_timeout", "5m", "how long teardown-forward-replication waits for dst to catch up" },
    { "diff", true, "run diff-schemas --full at the end" },
    { "accept_diff", "", "schema differences to accept, by the names diff-schemas gives them, separated by \";\" (e.g. accept_diff='table public.orders;view public.v'): the way to finish a cutover that stopped at diff-schemas when dst is to keep them; recorded in the journal, the audit log and status" },
    { "confirm", false, "ask before revoking logins (use --yes for unattended runs)" },
    { "fence", "nologin", "how revoke-logins stops the application: nologin (pgbelt's ALTER ROLE NOLOGIN; refused when a role is also used by a database of the server outside this cutover), connect (REVOKE CONNECT on these databases only, and their sessions are terminated at once) or auto" },
    { "lock_out_shared", false, "revoke LOGIN even from roles that other databases of the server use" },
    { "switch", "none", "none: the application reconnects elsewhere itself (every request in the window fails); pgbouncer: traffic is paused in pgbouncer and switched to dst" },
    { "pause_timeout", "30s", "switch=pgbouncer: the longest the application may wait; must be below pgbouncer's query_wait_timeout" },
    { "refresh_matviews", true, "after the window (after diff-sequences, or after the RESUME with switch=pgbouncer), refresh every materialized view on dst in dependency order, each timed; a failure is a warning, not a failure of the cutover (belt refresh-matviews DC DB retries)" },
    { "health_timeout", "30s", "how long, right before the first revoke (or PAUSE), to wait for forward replication to be healthy (apply worker running and settled, no schema drift); a down forward or a drift stops the cutover at once, untouched" },
  },
  ["rollback.lua"] = {
    { "drain_timeout", "1m", "how long to wait for dst sessions to end before terminating them" },
    { "settle", "250ms", "how long \"no sessions\" must hold before the drain counts as done" },
    { "catchup_timeout", "5m", "how long to wait for back replication to catch up" },
    { "teardown_back", true, "drop the back subscription at the end" },
    { "fence", "nologin", "how logins on dst are revoked (nologin, connect or auto; see cutover.lua)" },
    { "lock_out_shared", false, "revoke LOGIN on dst even from roles that other databases there use" },
  },
}
