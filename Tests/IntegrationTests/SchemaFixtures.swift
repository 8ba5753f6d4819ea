import Foundation

@testable import BeltRuntime

/// A schema with every construct the schema pipeline must carry exactly (see SchemaPipelineTests).
enum SchemaFixtures {
  /// Deferred indexes (indexes.sql) the fixture creates, by bare name.
  static let deferredIndexes = [
    "Idx Mixed Case", "events_payload_idx", "events_2023_payload_idx", "events_2024_payload_idx",
    "mat_totals_idx",
    "quo\"ted idx", "uniq näme", "trgm_note_idx",
  ]
  /// Unique indexes that must stay in the base schema (FK target, replica identity).
  static let baseIndexes = ["Customers_Code_key", "ri_idx"]
  /// NOT VALID constraints: (table or domain, name).
  static let notValid = [
    ("quo\"ted table", "Chk NotValid"), ("quo\"ted table", "fk \"not\" valid"),
    ("positive_int", "pos_small"),
  ]
  /// Extensions the schema needs.
  static let extensions = ["citext", "pg_trgm"]

  /// The SQL, run as the owner on src, for schema `schema` (which must exist). Needs the
  /// trusted extensions citext and pg_trgm (created in public).
  static func rich(_ schema: String) -> String {
    let s = PGConnection.quoteIdent(schema)
    return """
      CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
      CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
      CREATE TYPE \(s)."Mood" AS ENUM ('sad', 'ok', 'happy; NOT VALID');
      CREATE DOMAIN \(s).positive_int AS integer CHECK (VALUE > 0);
      ALTER DOMAIN \(s).positive_int ADD CONSTRAINT pos_small CHECK (VALUE < 1000000000) NOT VALID;
      CREATE SEQUENCE \(s)."Standalone Seq" START 42;
      CREATE TABLE \(s)."Customers" (
        id serial PRIMARY KEY,
        "Code" text NOT NULL,
        "naïve näme" text,
        email public.citext,
        mood \(s)."Mood" DEFAULT 'ok',
        qty \(s).positive_int
      );
      CREATE UNIQUE INDEX "Customers_Code_key" ON \(s)."Customers" ("Code");
      CREATE TABLE \(s)."naïve tåble" (
        "Id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        customer_code text REFERENCES \(s)."Customers" ("Code"),
        "quo""ted col" text,
        amount numeric
      );
      CREATE TABLE \(s)."quo""ted table" (id int PRIMARY KEY, "Other Id" bigint, note text);
      CREATE INDEX "Idx Mixed Case" ON \(s)."naïve tåble" (amount);
      ALTER TABLE \(s)."naïve tåble" CLUSTER ON "Idx Mixed Case";
      COMMENT ON INDEX \(s)."Idx Mixed Case" IS 'deferred; CREATE INDEX inside a comment';
      CREATE INDEX "quo""ted idx" ON \(s)."quo""ted table" (note) WHERE note IS NOT NULL;
      CREATE UNIQUE INDEX "uniq näme" ON \(s)."quo""ted table" (lower(note));
      ALTER INDEX \(s)."uniq näme" ALTER COLUMN 1 SET STATISTICS 500;
      CREATE INDEX trgm_note_idx ON \(s)."quo""ted table" USING gin (note public.gin_trgm_ops);
      ALTER TABLE \(s)."quo""ted table" ADD CONSTRAINT "Chk NotValid" CHECK (id > 0) NOT VALID;
      ALTER TABLE \(s)."quo""ted table" ADD CONSTRAINT "fk ""not"" valid"
        FOREIGN KEY ("Other Id") REFERENCES \(s)."naïve tåble" ("Id") NOT VALID;
      CREATE TABLE \(s).ri_table (a int NOT NULL, b text);
      CREATE UNIQUE INDEX ri_idx ON \(s).ri_table (a);
      ALTER TABLE \(s).ri_table REPLICA IDENTITY USING INDEX ri_idx;
      CREATE TABLE \(s).events (id bigint NOT NULL, happened date NOT NULL, payload text, PRIMARY KEY (id, happened))
        PARTITION BY RANGE (happened);
      CREATE TABLE \(s).events_2023 PARTITION OF \(s).events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
      CREATE TABLE \(s).events_2024 PARTITION OF \(s).events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE INDEX events_payload_idx ON \(s).events (payload);
      CREATE VIEW \(s)."Active View" AS SELECT id, "Code" FROM \(s)."Customers" WHERE mood <> 'sad';
      CREATE MATERIALIZED VIEW \(s).mat_totals AS
        SELECT customer_code, sum(amount) AS total FROM \(s)."naïve tåble" GROUP BY customer_code;
      CREATE INDEX mat_totals_idx ON \(s).mat_totals (customer_code);
      CREATE FUNCTION \(s)."touch; it"() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        -- CREATE INDEX nope ON x (y); ALTER TABLE x ADD CONSTRAINT c CHECK (true) NOT VALID;
        RAISE NOTICE 'CREATE INDEX %; NOT VALID', TG_OP;
        NEW.note := coalesce(NEW.note, 'x;y');
        RETURN NEW;
      END;
      $fn$;
      CREATE TRIGGER "Touch Trigger" BEFORE INSERT OR UPDATE ON \(s)."quo""ted table"
        FOR EACH ROW EXECUTE FUNCTION \(s)."touch; it"();
      CREATE FUNCTION \(s).sql_body(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + 1; SELECT a + 2; END;
      COMMENT ON TABLE \(s)."Customers" IS 'customers; CREATE INDEX x ON y (z); NOT VALID';
      COMMENT ON COLUMN \(s)."naïve tåble"."quo""ted col" IS 'it''s ; here';
      COMMENT ON CONSTRAINT "Chk NotValid" ON \(s)."quo""ted table" IS 'a NOT VALID check';
      GRANT SELECT ON \(s)."Customers" TO PUBLIC;
      INSERT INTO \(s)."Customers" ("Code", email, qty) VALUES ('A', 'a@x', 1), ('B', 'b@x', 2);
      INSERT INTO \(s)."naïve tåble" (customer_code, amount) VALUES ('A', 10), ('B', 20);
      INSERT INTO \(s)."quo""ted table" VALUES (1, 1, 'one');
      INSERT INTO \(s).events VALUES (1, '2023-05-01', 'p'), (2, '2024-05-01', 'q');
      REFRESH MATERIALIZED VIEW \(s).mat_totals;
      """
  }
}
