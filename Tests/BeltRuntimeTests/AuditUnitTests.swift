import Testing

@testable import BeltRuntime

/// What the audit log records (no server): which statements change a server, and redaction.
@Suite struct AuditUnitTests {
  @Test func serverChangingStatementsAreToldFromReads() {
    _ = Engines.all  // the engines register their extensions' read-only functions
    let changes = [
      "ALTER ROLE \"app\" WITH NOLOGIN", "CREATE TABLE t (a int)", "  -- note\n DROP TABLE t",
      "TRUNCATE \"public\".\"t\"",
      "COPY \"public\".\"t\" (\"a\") FROM STDIN (FORMAT binary)",
      "SELECT pglogical.create_node(node_name := $1, dsn := $2)",
      "SELECT setval($1::regclass, $2, true)",
      "SELECT usename, pg_terminate_backend(pid) AS done FROM pg_stat_activity",
      "BEGIN; SET LOCAL synchronous_commit = on; CREATE TEMP TABLE belt_wal_flush () ON COMMIT DROP; COMMIT",
      "INSERT INTO t VALUES (1)", "ANALYZE", "GRANT USAGE ON SCHEMA pglogical TO \"o\"",
      "SELECT pglogical.alter_subscription_enable($1, true)",
    ]
    for s in changes { #expect(Audit.changes(s), "\(s)") }
    let reads = [
      "SELECT count(*) FROM t", "SELECT pglogical.show_subscription_status($1)",
      "COPY \"public\".\"t\" TO STDOUT",
      "BEGIN", "COMMIT",
      "SET LOCAL session_replication_role = replica; SET LOCAL lock_timeout = '60s'",
      "LOCK TABLE t IN EXCLUSIVE MODE", "WITH x AS (SELECT 1) SELECT * FROM x",
      "SELECT 'setval(' AS s; SHOW server_version",
      "SELECT pglogical.pglogical_gen_slot_name(current_database(), $1, $2)",
    ]
    for s in reads { #expect(!Audit.changes(s), "\(s)") }
  }

  @Test func passwordsAndHashesNeverSurviveRedaction() {
    let secrets = ["o'wn er\\ #@pw", "pgl 'pw' \\x", "belt-root-pw"]
    let scram = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$c3RvcmVkS2V5:c2VydmVyS2V5"
    let cases = [
      "ALTER ROLE \"pgl\" WITH LOGIN PASSWORD '\(scram)'",
      "CREATE ROLE x PASSWORD 'md5" + String(repeating: "a1", count: 16) + "'",
      "host='h' user='pgl' password='pgl \\'pw\\' \\\\x' dbname='d'",
      "hostaddr=127.0.0.1 password=belt-root-pw port=5432",
      "a literal 'o''wn er\\ #@pw' and a raw o'wn er\\ #@pw and \(scram) in a value",
    ]
    for c in cases {
      let r = Audit.redact(c, secrets: secrets)
      #expect(r.contains("****"), "\(r)")
      for s in secrets { #expect(!r.contains(s), "\(r)") }
      #expect(!r.contains("SCRAM-SHA-256$") && !r.contains("md5a1a1"), "\(r)")
    }
    #expect(
      Audit.redact("ALTER ROLE \"a\" WITH NOLOGIN", secrets: secrets)
        == "ALTER ROLE \"a\" WITH NOLOGIN")
  }
}
