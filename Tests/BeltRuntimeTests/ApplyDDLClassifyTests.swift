import Testing

@testable import BeltRuntime

/// apply-ddl's ordering (issue 24): which side runs each statement first, and what it refuses.
@Suite struct ApplyDDLClassifyTests {
  static func first(_ sql: String) -> String {
    switch ApplyDDL.classify(sql) {
    case .success(let p): return p.first.rawValue
    case .failure(let r): return "refused: " + r.why
    }
  }

  @Test func additiveAndRelaxingRunOnDstFirst() {
    for sql in [
      "ALTER TABLE orders ADD COLUMN extra text",
      "ALTER TABLE IF EXISTS ONLY public.orders ADD extra int DEFAULT 0",
      "alter table \"Mixed Case\" add column \"Note\" text not null default 'x'",
      "CREATE TABLE extras (id int PRIMARY KEY)",
      "CREATE UNLOGGED TABLE scratch (id int)",
      "CREATE INDEX ON orders (item)",
      "CREATE INDEX CONCURRENTLY orders_i ON orders (item)",
      "CREATE TYPE mood2 AS ENUM ('a')",
      "ALTER TYPE mood ADD VALUE 'meh'",
      "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
      "ALTER TABLE orders ALTER COLUMN item DROP NOT NULL",
      "ALTER TABLE orders DROP CONSTRAINT orders_item_check",
      "DROP INDEX orders_i",
    ] {
      #expect(Self.first(sql) == "dst", "\(sql)")
    }
  }

  @Test func removalsAndTighteningsRunOnSrcFirst() {
    for sql in [
      "ALTER TABLE orders DROP COLUMN extra",
      "ALTER TABLE orders DROP extra",
      "DROP TABLE extras",
      "DROP TABLE IF EXISTS a, b CASCADE",
      "ALTER TABLE orders ADD CONSTRAINT positive CHECK (id > 0)",
      "ALTER TABLE orders ADD PRIMARY KEY (id)",
      "ALTER TABLE orders ALTER COLUMN item SET NOT NULL",
      "ALTER TABLE orders ALTER item SET DEFAULT 'x'",
      "CREATE UNIQUE INDEX orders_u ON orders (item)",
      "ALTER TABLE orders VALIDATE CONSTRAINT positive",
      "COMMENT ON TABLE orders IS 'x'",
    ] {
      #expect(Self.first(sql) == "src", "\(sql)")
    }
  }

  @Test func whatNoOrderMakesSafeIsRefused() {
    for (sql, why) in [
      ("ALTER TABLE orders ALTER COLUMN item TYPE varchar(10)", "ALTER COLUMN ... TYPE"),
      ("ALTER TABLE orders ALTER item SET DATA TYPE int", "ALTER COLUMN ... TYPE"),
      ("ALTER TABLE orders RENAME COLUMN item TO name", "RENAME"),
      ("ALTER TABLE orders RENAME TO purchases", "RENAME"),
      ("ALTER TABLE orders SET SCHEMA other", "SET SCHEMA"),
      ("ALTER TABLE orders ADD COLUMN a int, DROP COLUMN b", "give each its own statement"),
      ("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'", "ALTER TYPE"),
      ("CREATE TABLE copy AS SELECT * FROM orders", "writes data"),
      ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", "partition"),
      ("CREATE TEMP TABLE t (id int)", "temporary"),
      ("INSERT INTO orders (item) VALUES ('x')", "not DDL"),
      ("TRUNCATE orders", "not DDL"),
      ("GRANT SELECT ON orders TO app", "GRANT"),
      ("BEGIN", "transaction control"),
      ("VACUUM orders", "cannot order"),
      ("ALTER TABLE orders ATTACH PARTITION p2 FOR VALUES IN (2)", "not one belt orders"),
      ("ALTER TABLE orders REPLICA IDENTITY FULL", "not one belt orders"),
    ] {
      let r = Self.first(sql)
      #expect(r.hasPrefix("refused: ") && r.contains(why), "\(sql): \(r)")
    }
  }

  @Test func createTableNamesTheTableToPublish() throws {
    guard
      case .success(let p) = ApplyDDL.classify(
        "CREATE TABLE IF NOT EXISTS public.\"New T\" (id int PRIMARY KEY)")
    else {
      Issue.record("refused")
      return
    }
    #expect(p.creates == QualifiedName(schema: "public", name: "New T"))
    guard case .success(let u) = ApplyDDL.classify("CREATE UNLOGGED TABLE scratch (id int)") else {
      return
    }
    #expect(u.creates == nil)
  }
}
