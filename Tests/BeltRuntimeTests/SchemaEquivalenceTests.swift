import Testing

@testable import BeltRuntime

/// Which statements diff-schemas re-creates on dst to judge (no server needed for the pairing).
@Suite struct SchemaEquivalenceTests {
  @Test func statementsNameTheirObject() throws {
    let cases: [(String, String, String)] = [
      (
        "CREATE TABLE public.orders (\n    id integer NOT NULL\n);", "table public.orders", "orders"
      ),
      ("CREATE VIEW app.\"My View\" AS\n SELECT 1;", "view app.\"My View\"", "\"My View\""),
      (
        "CREATE MATERIALIZED VIEW public.mv AS\n SELECT 1\n  WITH NO DATA;",
        "materialized view public.mv", "mv"
      ),
      (
        "ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_chk CHECK ((a > 0)) NOT VALID;",
        "constraint public.t t_chk", "t"
      ),
      (
        "ALTER TABLE ONLY public.t ALTER COLUMN id SET DEFAULT nextval('public.t_id_seq'::regclass);",
        "default public.t id", "t"
      ),
      (
        "CREATE INDEX \"Idx\" ON ONLY public.t USING btree (a) WHERE (a > 0);",
        "index public.t \"Idx\"", "t"
      ),
      (
        "CREATE TRIGGER trg BEFORE INSERT OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION public.f();",
        "trigger public.t trg", "t"
      ),
      (
        "CREATE DOMAIN public.d AS integer\n\tCONSTRAINT d_check CHECK ((VALUE > 0));",
        "domain public.d", "d"
      ),
    ]
    for (sql, key, bare) in cases {
      let t = try #require(SchemaEquivalence.target(sql), "\(sql)")
      #expect(t.key == key)
      #expect(t.bareName == bare)
    }
    #expect(
      SchemaEquivalence.target(
        "CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n    AS $$ SELECT 1 $$;")
        == nil)
  }

  @Test func scratchCopiesMoveOnlyTheObjectsOwnName() throws {
    let sql = "CREATE INDEX i ON public.t USING btree (public.f(a));"
    let t = try #require(SchemaEquivalence.target(sql))
    let s = SchemaEquivalence.scratchSQL(sql, t, scratch: "belt_cmp_src_1")
    #expect(s.prepare == "CREATE TABLE belt_cmp_src_1.t (LIKE public.t)")
    #expect(s.run == "CREATE INDEX i ON belt_cmp_src_1.t USING btree (public.f(a));")
    let v = "CREATE VIEW public.v AS\n SELECT t.a\n   FROM public.t;"
    let vs = SchemaEquivalence.scratchSQL(
      v, try #require(SchemaEquivalence.target(v)), scratch: "s")
    #expect(vs.prepare == nil && vs.run == "CREATE VIEW s.v AS\n SELECT t.a\n   FROM public.t;")
  }

  @Test func onlyObjectsDefinedOnceOnEachSideArePaired() {
    let src = [
      "\nCREATE TABLE public.a (\n    x integer\n);",
      "\nCREATE VIEW public.v AS\n SELECT 1 AS one;",
      "\nCREATE TABLE public.gone (\n    x integer\n);",
    ]
    let dst = [
      "\nCREATE TABLE public.a (\n    x bigint\n);", "\nCREATE VIEW public.v AS\n SELECT 1 AS one;",
      "\nCREATE TABLE public.new (\n    x integer\n);",
    ]
    let pairs = SchemaEquivalence.pairs(src: src, dst: dst)
    #expect(pairs.map(\.key) == ["table public.a"])
    #expect(pairs.first?.src == src[0] && pairs.first?.dst == dst[0])
  }

  @Test func granteesAreReadFromPgDumpsGrantsAndRevokes() {
    #expect(SchemaOps.grantee("GRANT ALL ON TABLE public.t TO pgl_1;") == "pgl_1")
    #expect(
      SchemaOps.grantee(
        "GRANT SELECT ON TABLE public.\"T x\" TO \"Report Reader\" WITH GRANT OPTION;")
        == "Report Reader")
    #expect(SchemaOps.grantee("REVOKE USAGE ON SCHEMA public FROM PUBLIC;") == "PUBLIC")
    #expect(
      SchemaOps.grantee(
        "ALTER DEFAULT PRIVILEGES FOR ROLE o IN SCHEMA public GRANT SELECT ON TABLES TO app;")
        == "app")
    #expect(SchemaOps.grantee("COMMENT ON TABLE t IS 'x';") == nil)
  }
}
