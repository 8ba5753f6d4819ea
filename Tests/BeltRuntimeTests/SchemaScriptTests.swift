import Testing

@testable import BeltRuntime

@Suite struct SchemaScriptTests {
  // MARK: helpers

  func q(_ schema: String?, _ name: String) -> QualifiedName {
    QualifiedName(schema: schema, name: name)
  }

  func kinds(_ sql: String) -> [SQLStatement.Kind] { SchemaScript.split(sql).map(\.kind) }

  func texts(_ sql: String) -> [String] { SchemaScript.split(sql).map(\.text) }

  func indexInfo(_ sql: String) -> IndexInfo? {
    guard case .index(let info) = SchemaScript.classify(sql) else { return nil }
    return info
  }

  // MARK: lexer

  @Test func dollarQuotedBodyWithSemicolonsAndKeywords() {
    let fn = """
      CREATE FUNCTION public.f() RETURNS trigger
          LANGUAGE plpgsql
          AS $$
      BEGIN
        EXECUTE 'CREATE INDEX x ON t (a)';
        PERFORM 1; -- NOT VALID; GRANT SELECT
        CREATE INDEX y ON t (b); ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;
        GRANT SELECT ON t TO bob;
        RETURN NEW;
      END;
      $$;
      """
    let sql = fn + "\nSELECT 1;\n"
    let st = SchemaScript.split(sql)
    #expect(st.count == 2)
    #expect(st.first?.text == fn + "\n")
    #expect(st.first?.kind == .other)
    #expect(st.last?.text == "SELECT 1;\n")
  }

  @Test func nestedAndNamedDollarTags() {
    let body = """
      CREATE FUNCTION public.g(integer) RETURNS void
          LANGUAGE plpgsql
          AS $fn$
      BEGIN
        EXECUTE $q$CREATE UNIQUE INDEX z ON t (a); $$ still inside; $q$;
        PERFORM $1 + 1;
        RAISE NOTICE $_$ done; $fn ; $_$;
      END
      $fn$;
      """
    let st = SchemaScript.split(body + "\n\nCREATE TABLE public.after (a integer);\n")
    #expect(st.count == 2)
    #expect(st.first?.text == body + "\n")
    #expect(st.first?.kind == .other)
    #expect(st.last?.text == "CREATE TABLE public.after (a integer);\n")
  }

  @Test func dollarInsideIdentifierAndParamsAreNotTags() {
    // a$b$c is one identifier; $1 is a parameter: neither opens a dollar quote.
    let st = texts("SELECT a$b$c FROM t;\nSELECT $1;\nSELECT 2;\n")
    #expect(st == ["SELECT a$b$c FROM t;\n", "SELECT $1;\n", "SELECT 2;\n"])
  }

  @Test func stringLiteralsWithSemicolonsAndDoubledQuotes() {
    let st = texts("COMMENT ON TABLE public.t IS 'a; b ''c''; d';\nSELECT 'x'';'';';\nSELECT 3;\n")
    #expect(
      st == [
        "COMMENT ON TABLE public.t IS 'a; b ''c''; d';\n", "SELECT 'x'';'';';\n", "SELECT 3;\n",
      ])
  }

  @Test func extendedAndUnicodeStrings() {
    let a = #"COMMENT ON COLUMN public.t.c IS E'it\'s; here \\';"#
    let b = #"SELECT U&'d\0061t;a', e'\\';"#
    let st = texts(a + "\n" + b + "\nSELECT 4;\n")
    #expect(st == [a + "\n", b + "\n", "SELECT 4;\n"])
  }

  @Test func standardConformingStringsOffMakesBackslashEscape() {
    let sql = "SET standard_conforming_strings = off;\nSELECT 'a\\'; b';\nSELECT 5;\n"
    let st = texts(sql)
    #expect(
      st == ["SET standard_conforming_strings = off;\n", "SELECT 'a\\'; b';\n", "SELECT 5;\n"])
  }

  @Test func commentsBetweenAndInsideStatements() {
    let inner =
      "CREATE TABLE public.t (\n    a integer -- note; here\n    /* and; /* nested; */ here; */\n);"
    let sql = """
      --
      -- Name: t; Type: TABLE; Schema: public; Owner: -
      --

      /* block; /* nested ; */ comment; */
      \(inner)
      -- trailing; comment
      SELECT 1; -- same line; comment
      """
    let st = texts(sql)
    #expect(st == [inner + "\n", "SELECT 1;\n"])
  }

  @Test func quotedIdentifiersWithSemicolonsQuotesAndUnicode() {
    let st = SchemaScript.split(
      "CREATE TABLE public.\"semi;colon\" (\"a\"\"b;\" integer);\nCREATE SCHEMA \"Naïve Schema\";\nCREATE SCHEMA Foo;\n"
    )
    #expect(st.count == 3)
    #expect(st.first?.text == "CREATE TABLE public.\"semi;colon\" (\"a\"\"b;\" integer);\n")
    #expect(st.dropFirst().first?.kind == .createSchema(name: "Naïve Schema"))
    #expect(st.last?.kind == .createSchema(name: "foo"))
  }

  @Test func psqlMetaCommands() {
    let sql = """
      \\restrict abc123
      --
      -- PostgreSQL database dump
      --
      SET statement_timeout = 0;
      CREATE TABLE public.t (a integer);
      \\unrestrict abc123
      """
    let st = SchemaScript.split(sql)
    #expect(st.map(\.kind) == [.meta, .set, .other, .meta])
    #expect(st.first?.text == "\\restrict abc123\n")
    #expect(st.last?.text == "\\unrestrict abc123\n")
    #expect(st.dropFirst().first?.text == "SET statement_timeout = 0;\n")
  }

  @Test func beginAtomicBodiesAndRuleActionsKeepTheirSemicolons() {
    let fn = """
      CREATE FUNCTION public.add_one(integer) RETURNS integer
          LANGUAGE sql IMMUTABLE
          BEGIN ATOMIC
       SELECT CASE WHEN ($1 > 0) THEN ($1 + 1) ELSE 0 END;
       SELECT 2;
      END;
      """
    let rule = """
      CREATE RULE r AS
          ON INSERT TO public.t DO INSTEAD ( INSERT INTO public.log (a)  VALUES (new.a);
       INSERT INTO public.log2 (a)  VALUES (new.a);
      );
      """
    let st = texts(fn + "\n\n" + rule + "\n\nSELECT 1;\n")
    #expect(st == [fn + "\n", rule + "\n", "SELECT 1;\n"])
  }

  @Test func unterminatedLastStatementIsKept() {
    #expect(texts("SELECT 1;\nSELECT 2 -- no semicolon\n") == ["SELECT 1;\n", "SELECT 2\n"])
    // A backslash line ends an unterminated statement instead of being glued to it.
    let st = SchemaScript.split("SELECT 3\n\\unrestrict k\n")
    #expect(st.map(\.text) == ["SELECT 3\n", "\\unrestrict k\n"])
    #expect(st.map(\.kind) == [.other, .meta])
  }

  @Test func copyFromStdinDataIsPartOfTheStatement() {
    let sql = "COPY public.t (a, b) FROM stdin;\n1\tx;y\n2\t'z\n\\.\n\nSELECT 1;\n"
    #expect(
      texts(sql) == ["COPY public.t (a, b) FROM stdin;\n1\tx;y\n2\t'z\n\\.\n", "SELECT 1;\n"])
  }

  // MARK: classification

  @Test func classifiesSettingsExtensionsPrivilegesOwners() {
    #expect(SchemaScript.classify("SET client_encoding = 'UTF8';") == .set)
    #expect(
      SchemaScript.classify("SELECT pg_catalog.set_config('search_path', '', false);") == .set)
    #expect(SchemaScript.classify("SELECT pg_catalog.setval('public.s', 1, false);") == .other)
    #expect(
      SchemaScript.classify("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA public;")
        == .createExtension(name: "uuid-ossp"))
    #expect(SchemaScript.classify("CREATE EXTENSION PostGIS;") == .createExtension(name: "postgis"))
    #expect(SchemaScript.classify("COMMENT ON EXTENSION citext IS 'x';") == .commentOnExtension)
    #expect(SchemaScript.classify("GRANT SELECT ON TABLE public.t TO bob;") == .grantOrRevoke)
    #expect(SchemaScript.classify("REVOKE ALL ON SCHEMA public FROM PUBLIC;") == .grantOrRevoke)
    #expect(
      SchemaScript.classify(
        "ALTER DEFAULT PRIVILEGES FOR ROLE bob IN SCHEMA public GRANT SELECT ON TABLES TO x;")
        == .grantOrRevoke)
    #expect(SchemaScript.classify("ALTER TABLE public.t OWNER TO bob;") == .alterOwner)
    #expect(
      SchemaScript.classify("ALTER FUNCTION public.f(integer) OWNER TO \"Bob\";") == .alterOwner)
    #expect(SchemaScript.classify("ALTER TABLE public.t RENAME COLUMN owner TO x;") == .other)
    #expect(SchemaScript.classify("ALTER TABLE public.t RENAME owner TO x;") == .other)
    #expect(
      SchemaScript.classify("CREATE SCHEMA IF NOT EXISTS sales;") == .createSchema(name: "sales"))
    #expect(
      SchemaScript.classify("CREATE TABLE public.extension_grants (\"GRANT \" text);") == .other)
  }

  @Test func keywordsInsideLiteralsNeverClassify() {
    #expect(
      SchemaScript.classify("COMMENT ON TABLE public.t IS 'NOT VALID; CREATE INDEX';") == .other)
    #expect(
      SchemaScript.classify(
        "CREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $$ CREATE INDEX i ON t (a) $$;")
        == .other)
    #expect(
      SchemaScript.classify(
        "CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN EXECUTE 'ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID'; END $b$;"
      ) == .other)
    #expect(
      SchemaScript.classify("CREATE TABLE public.\"CREATE INDEX\" (\"NOT VALID\" boolean);")
        == .other)
    #expect(
      SchemaScript.classify("create unique index lower_idx on public.t using btree (a);") != .other)
  }

  @Test func parsesIndexExamples() {
    #expect(
      indexInfo("CREATE INDEX \"Idx Name\" ON public.\"My Table\" USING btree (\"Col A\", b);")
        == IndexInfo(
          name: q("public", "Idx Name"), table: q("public", "My Table"), unique: false,
          onOnly: false,
          columns: ["Col A", "b"], isPartial: false))
    #expect(
      indexInfo(
        "CREATE UNIQUE INDEX fk_unique_parent_unique_code_idx ON public.fk_unique_parent USING btree (unique_code);"
      )
        == IndexInfo(
          name: q("public", "fk_unique_parent_unique_code_idx"),
          table: q("public", "fk_unique_parent"),
          unique: true, onOnly: false, columns: ["unique_code"], isPartial: false))
    #expect(
      indexInfo(
        "CREATE INDEX measurements_city_idx ON ONLY public.measurements USING btree (city_id);")
        == IndexInfo(
          name: q("public", "measurements_city_idx"), table: q("public", "measurements"),
          unique: false,
          onOnly: true, columns: ["city_id"], isPartial: false))
    #expect(
      indexInfo(
        "CREATE INDEX \"we\"\"ird\" ON sch.\"naïve\" USING btree (Foo DESC NULLS LAST, \"b\" text_pattern_ops);"
      )
        == IndexInfo(
          name: q("sch", "we\"ird"), table: q("sch", "naïve"), unique: false, onOnly: false,
          columns: ["foo", "b"], isPartial: false))
    let partial = indexInfo(
      "CREATE UNIQUE INDEX p_idx ON public.t USING btree (a) WHERE (deleted_at IS NULL);")
    #expect(partial?.isPartial == true)
    #expect(partial?.columns == ["a"])
    let expr = indexInfo("CREATE UNIQUE INDEX e_idx ON public.t USING btree (lower(email));")
    #expect(expr?.columns == nil)
    #expect(indexInfo("CREATE INDEX e2_idx ON public.t USING btree (((a + b)));")?.columns == nil)
    let incl = indexInfo(
      "CREATE UNIQUE INDEX i_idx ON public.t USING btree (a COLLATE \"C\" public.my_ops) INCLUDE (b) WITH (fillfactor='90');"
    )
    #expect(incl?.columns == ["a"])
    #expect(incl?.isPartial == false)
  }

  @Test func parsesAttachAndNotValidConstraints() {
    #expect(
      SchemaScript.classify(
        "ALTER INDEX public.measurements_city_idx ATTACH PARTITION public.measurements_y2024_city_idx;"
      )
        == .attachIndexPartition(
          parentIndex: q("public", "measurements_city_idx"),
          childIndex: q("public", "measurements_y2024_city_idx")))
    #expect(
      SchemaScript.classify(
        "ALTER TABLE public.orders\n    ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES public.customers(id) NOT VALID;"
      )
        == .notValidConstraint(
          ConstraintInfo(
            name: "orders_customer_fk", table: q("public", "orders"), isForeignKey: true)))
    #expect(
      SchemaScript.classify(
        "ALTER TABLE ONLY public.\"My Table\"\n    ADD CONSTRAINT \"chk \"\"q\"\"\" CHECK ((qty > 0)) NOT VALID;"
      )
        == .notValidConstraint(
          ConstraintInfo(name: "chk \"q\"", table: q("public", "My Table"), isForeignKey: false)))
    #expect(
      SchemaScript.classify(
        "ALTER DOMAIN public.posint\n    ADD CONSTRAINT posint_check CHECK ((VALUE > 0)) NOT VALID;"
      )
        == .notValidConstraint(
          ConstraintInfo(
            name: "posint_check", table: q("public", "posint"), isForeignKey: false, onDomain: true)
        ))
    // Valid FK: stays .other.
    #expect(
      SchemaScript.classify(
        "ALTER TABLE ONLY public.fk_unique_child ADD CONSTRAINT fk_unique_child_parent_code_fkey FOREIGN KEY (parent_code) REFERENCES public.fk_unique_parent(unique_code);"
      ) == .other)
    // "not valid" inside the CHECK expression is not the NOT VALID attribute.
    #expect(
      SchemaScript.classify("ALTER TABLE ONLY public.t ADD CONSTRAINT c CHECK ((NOT valid));")
        == .other)
  }

  @Test func quotingAndDropStatements() {
    #expect(PGConnection.quoteIdent("a\"b") == "\"a\"\"b\"")
    #expect(PGConnection.quoteIdent("plain") == "\"plain\"")
    guard
      let info = indexInfo(
        "CREATE INDEX \"Idx Name\" ON public.\"My Table\" USING btree (\"Col A\");")
    else {
      Issue.record("index not parsed")
      return
    }
    #expect(SchemaScript.dropIndexSQL(info) == "DROP INDEX IF EXISTS \"public\".\"Idx Name\";")
    let c = ConstraintInfo(name: "chk \"q\"", table: q("public", "My Table"), isForeignKey: false)
    #expect(
      SchemaScript.dropConstraintSQL(c)
        == "ALTER TABLE \"public\".\"My Table\" DROP CONSTRAINT IF EXISTS \"chk \"\"q\"\"\";")
    let d = ConstraintInfo(
      name: "d_check", table: q("public", "d"), isForeignKey: false, onDomain: true)
    #expect(
      SchemaScript.dropConstraintSQL(d)
        == "ALTER DOMAIN \"public\".\"d\" DROP CONSTRAINT IF EXISTS \"d_check\";")
    let st = SchemaScript.split("SELECT 1;\nSELECT 2;\n")
    #expect(SchemaScript.render(st) == "SELECT 1;\n\nSELECT 2;\n")
  }

  // MARK: FK-required unique indexes

  @Test func fkRequiredUniqueIndexPositive() {
    let sql = """
      CREATE UNIQUE INDEX fk_unique_parent_unique_code_idx ON public.fk_unique_parent USING btree (unique_code);
      CREATE INDEX other_idx ON public.fk_unique_parent USING btree (unique_code);
      ALTER TABLE ONLY public.fk_unique_child ADD CONSTRAINT fk_unique_child_parent_code_fkey FOREIGN KEY (parent_code) REFERENCES public.fk_unique_parent(unique_code);
      """
    let files = SchemaScript.partition(SchemaScript.split(sql))
    #expect(files.fkRequiredUniqueIndexes == [q("public", "fk_unique_parent_unique_code_idx")])
    #expect(files.base.count == 2)
    #expect(
      files.base.first?.text.hasPrefix("CREATE UNIQUE INDEX fk_unique_parent_unique_code_idx")
        == true)
    #expect(
      files.indexes.map(\.text) == [
        "CREATE INDEX other_idx ON public.fk_unique_parent USING btree (unique_code);\n"
      ])
  }

  @Test func fkRequiredNegativeCases() {
    let sql = """
      CREATE UNIQUE INDEX partial_idx ON public.p USING btree (code) WHERE (active);
      CREATE UNIQUE INDEX expr_idx ON public.p USING btree (lower(code));
      CREATE UNIQUE INDEX other_table_idx ON public.q USING btree (code);
      CREATE UNIQUE INDEX other_schema_idx ON other.p USING btree (code);
      CREATE UNIQUE INDEX superset_idx ON public.p USING btree (code, id);
      ALTER TABLE ONLY public.c ADD CONSTRAINT c_fkey FOREIGN KEY (p_code) REFERENCES public.p(code);
      """
    let files = SchemaScript.partition(SchemaScript.split(sql))
    #expect(files.fkRequiredUniqueIndexes.isEmpty)
    #expect(files.indexes.count == 5)
    #expect(files.base.count == 1)
  }

  @Test func fkRequiredCompositeOrderInsensitiveAndNotValidAndUnqualified() {
    let sql = """
      CREATE UNIQUE INDEX comp_idx ON public.p USING btree (b, "A");
      CREATE UNIQUE INDEX nv_idx ON public.r USING btree (x);
      CREATE UNIQUE INDEX unq_idx ON app.s USING btree (y);
      ALTER TABLE ONLY public.c ADD CONSTRAINT c_fkey FOREIGN KEY (cb, ca) REFERENCES public.p("A", b);
      ALTER TABLE public.c ADD CONSTRAINT c_r_fkey FOREIGN KEY (rx) REFERENCES public.r(x) NOT VALID;
      CREATE TABLE app.d (y integer REFERENCES s(y));
      """
    let files = SchemaScript.partition(SchemaScript.split(sql))
    #expect(
      files.fkRequiredUniqueIndexes == [
        q("public", "comp_idx"), q("public", "nv_idx"), q("app", "unq_idx"),
      ])
    #expect(files.indexes.isEmpty)
    #expect(files.invalidConstraints.count == 1)
  }

  @Test func fkRequiredPartitionedParentKeepsChildrenAndAttachesInBase() {
    let sql = """
      CREATE UNIQUE INDEX m_code_idx ON ONLY public.m USING btree (code, logdate);
      CREATE UNIQUE INDEX m_2024_code_idx ON public.m_2024 USING btree (code, logdate);
      CREATE INDEX m_city_idx ON ONLY public.m USING btree (city);
      CREATE INDEX m_2024_city_idx ON public.m_2024 USING btree (city);
      ALTER INDEX public.m_code_idx ATTACH PARTITION public.m_2024_code_idx;
      ALTER INDEX public.m_city_idx ATTACH PARTITION public.m_2024_city_idx;
      ALTER INDEX public.m_pkey ATTACH PARTITION public.m_2024_pkey;
      ALTER TABLE public.c ADD CONSTRAINT c_m_fkey FOREIGN KEY (code, d) REFERENCES public.m(logdate, code);
      """
    let files = SchemaScript.partition(SchemaScript.split(sql))
    #expect(files.fkRequiredUniqueIndexes == [q("public", "m_code_idx")])
    #expect(
      files.base.map { String($0.text.prefix(40)) } == [
        "CREATE UNIQUE INDEX m_code_idx ON ONLY p",
        "CREATE UNIQUE INDEX m_2024_code_idx ON p",
        "ALTER INDEX public.m_code_idx ATTACH PAR",
        "ALTER INDEX public.m_pkey ATTACH PARTITI",
        "ALTER TABLE public.c ADD CONSTRAINT c_m_",
      ])
    #expect(
      files.indexes.map(\.text) == [
        "CREATE INDEX m_city_idx ON ONLY public.m USING btree (city);\n",
        "CREATE INDEX m_2024_city_idx ON public.m_2024 USING btree (city);\n",
        "ALTER INDEX public.m_city_idx ATTACH PARTITION public.m_2024_city_idx;\n",
      ])
  }

  // MARK: partition

  @Test func partitionPutsEachKindInItsFile() {
    let sql = """
      \\restrict k
      SET statement_timeout = 0;
      SELECT pg_catalog.set_config('search_path', '', false);
      CREATE SCHEMA app;
      CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;
      COMMENT ON EXTENSION citext IS 'ci text';
      CREATE TABLE app.t (a integer, b integer);
      ALTER TABLE app.t OWNER TO bob;
      GRANT SELECT ON TABLE app.t TO reader;
      CREATE INDEX t_a_idx ON app.t USING btree (a);
      ALTER TABLE app.t ADD CONSTRAINT t_b_check CHECK ((b > 0)) NOT VALID;
      CREATE EXTENSION citext;
      \\unrestrict k
      """
    let st = SchemaScript.split(sql)
    let files = SchemaScript.partition(st)
    let sets = [
      "SET statement_timeout = 0;\n", "SELECT pg_catalog.set_config('search_path', '', false);\n",
    ]
    #expect(
      files.full.map(\.text)
        == sets + [
          "CREATE SCHEMA app;\n", "CREATE TABLE app.t (a integer, b integer);\n",
          "CREATE INDEX t_a_idx ON app.t USING btree (a);\n",
          "ALTER TABLE app.t ADD CONSTRAINT t_b_check CHECK ((b > 0)) NOT VALID;\n",
        ])
    #expect(
      files.base.map(\.text) == sets + [
        "CREATE SCHEMA app;\n", "CREATE TABLE app.t (a integer, b integer);\n",
      ])
    #expect(
      files.indexes.map(\.text) == sets + ["CREATE INDEX t_a_idx ON app.t USING btree (a);\n"])
    #expect(
      files.invalidConstraints.map(\.text)
        == sets + ["ALTER TABLE app.t ADD CONSTRAINT t_b_check CHECK ((b > 0)) NOT VALID;\n"])
    #expect(files.extensions == ["citext"])
    #expect(files.fkRequiredUniqueIndexes.isEmpty)
    let rendered = files.renderedFiles()
    #expect(
      rendered.map(\.name) == [
        "schema.sql", "invalid_constraints.sql", "indexes.sql",
        "no_invalid_constraints_no_indexes.sql",
      ])
    #expect(
      rendered.dropFirst(2).first?.contents
        == "SET statement_timeout = 0;\n\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE INDEX t_a_idx ON app.t USING btree (a);\n"
    )
  }

  // MARK: realistic dump

  static let pgDump15 = #"""
    --
    -- PostgreSQL database dump
    --

    -- Dumped from database version 15.6 (Debian 15.6-1.pgdg120+2)
    -- Dumped by pg_dump version 15.6 (Debian 15.6-1.pgdg120+2)

    SET statement_timeout = 0;
    SET lock_timeout = 0;
    SET idle_in_transaction_session_timeout = 0;
    SET client_encoding = 'UTF8';
    SET standard_conforming_strings = on;
    SELECT pg_catalog.set_config('search_path', '', false);
    SET check_function_bodies = false;
    SET xmloption = content;
    SET client_min_messages = warning;
    SET row_security = off;

    --
    -- Name: citext; Type: EXTENSION; Schema: -; Owner: -
    --

    CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public;


    --
    -- Name: EXTENSION citext; Type: COMMENT; Schema: -; Owner: 
    --

    COMMENT ON EXTENSION citext IS 'data type for case-insensitive character strings';


    --
    -- Name: order_status; Type: TYPE; Schema: public; Owner: -
    --

    CREATE TYPE public.order_status AS ENUM (
        'new',
        'paid;shipped',
        'it''s done'
    );


    --
    -- Name: positive_int; Type: DOMAIN; Schema: public; Owner: -
    --

    CREATE DOMAIN public.positive_int AS integer
    	CONSTRAINT positive_int_check CHECK ((VALUE > 0));


    --
    -- Name: touch_updated_at(); Type: FUNCTION; Schema: public; Owner: -
    --

    CREATE FUNCTION public.touch_updated_at() RETURNS trigger
        LANGUAGE plpgsql
        AS $$
    BEGIN
      NEW.updated_at := now(); -- CREATE INDEX would be silly; NOT VALID too
      EXECUTE 'GRANT SELECT ON public.orders TO x';
      RETURN NEW;
    END;
    $$;


    --
    -- Name: add_one(integer); Type: FUNCTION; Schema: public; Owner: -
    --

    CREATE FUNCTION public.add_one(integer) RETURNS integer
        LANGUAGE sql IMMUTABLE
        BEGIN ATOMIC
     SELECT ($1 + 1);
    END;


    SET default_tablespace = '';

    SET default_table_access_method = heap;

    --
    -- Name: customers; Type: TABLE; Schema: public; Owner: -
    --

    CREATE TABLE public.customers (
        id bigint NOT NULL,
        email public.citext NOT NULL,
        unique_code text,
        "Display Name" text
    );


    --
    -- Name: customers_id_seq; Type: SEQUENCE; Schema: public; Owner: -
    --

    CREATE SEQUENCE public.customers_id_seq
        START WITH 1
        INCREMENT BY 1
        NO MINVALUE
        NO MAXVALUE
        CACHE 1;


    --
    -- Name: customers_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
    --

    ALTER SEQUENCE public.customers_id_seq OWNED BY public.customers.id;


    --
    -- Name: measurements; Type: TABLE; Schema: public; Owner: -
    --

    CREATE TABLE public.measurements (
        id bigint NOT NULL,
        city_id integer NOT NULL,
        logdate date NOT NULL
    )
    PARTITION BY RANGE (logdate);


    --
    -- Name: measurements_y2024; Type: TABLE; Schema: public; Owner: -
    --

    CREATE TABLE public.measurements_y2024 (
        id bigint NOT NULL,
        city_id integer NOT NULL,
        logdate date NOT NULL
    );


    --
    -- Name: orders; Type: TABLE; Schema: public; Owner: -
    --

    CREATE TABLE public.orders (
        id bigint NOT NULL,
        customer_id bigint NOT NULL,
        customer_code text,
        status public.order_status DEFAULT 'new'::public.order_status NOT NULL,
        qty public.positive_int,
        updated_at timestamp with time zone
    );


    --
    -- Name: TABLE orders; Type: COMMENT; Schema: public; Owner: -
    --

    COMMENT ON TABLE public.orders IS 'NOT VALID; CREATE INDEX';


    --
    -- Name: paid_orders; Type: VIEW; Schema: public; Owner: -
    --

    CREATE VIEW public.paid_orders AS
     SELECT orders.id,
        orders.customer_id
       FROM public.orders
      WHERE (orders.status = 'paid;shipped'::public.order_status);


    --
    -- Name: order_counts; Type: MATERIALIZED VIEW; Schema: public; Owner: -
    --

    CREATE MATERIALIZED VIEW public.order_counts AS
     SELECT orders.customer_id,
        count(*) AS n
       FROM public.orders
      GROUP BY orders.customer_id
      WITH NO DATA;


    --
    -- Name: measurements_y2024; Type: TABLE ATTACH; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.measurements ATTACH PARTITION public.measurements_y2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');


    --
    -- Name: customers id; Type: DEFAULT; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.customers ALTER COLUMN id SET DEFAULT nextval('public.customers_id_seq'::regclass);


    --
    -- Name: customers customers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.customers
        ADD CONSTRAINT customers_pkey PRIMARY KEY (id);


    --
    -- Name: measurements measurements_pkey; Type: CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.measurements
        ADD CONSTRAINT measurements_pkey PRIMARY KEY (id, logdate);


    --
    -- Name: measurements_y2024 measurements_y2024_pkey; Type: CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.measurements_y2024
        ADD CONSTRAINT measurements_y2024_pkey PRIMARY KEY (id, logdate);


    --
    -- Name: orders orders_qty_check; Type: CHECK CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE public.orders
        ADD CONSTRAINT orders_qty_check CHECK (((qty)::integer < 1000)) NOT VALID;


    --
    -- Name: customers_unique_code_idx; Type: INDEX; Schema: public; Owner: -
    --

    CREATE UNIQUE INDEX customers_unique_code_idx ON public.customers USING btree (unique_code);


    --
    -- Name: measurements_city_idx; Type: INDEX; Schema: public; Owner: -
    --

    CREATE INDEX measurements_city_idx ON ONLY public.measurements USING btree (city_id);


    --
    -- Name: measurements_y2024_city_idx; Type: INDEX; Schema: public; Owner: -
    --

    CREATE INDEX measurements_y2024_city_idx ON public.measurements_y2024 USING btree (city_id);


    --
    -- Name: orders_lower_code_idx; Type: INDEX; Schema: public; Owner: -
    --

    CREATE INDEX orders_lower_code_idx ON public.orders USING btree (lower(customer_code));


    --
    -- Name: measurements_y2024_pkey; Type: INDEX ATTACH; Schema: public; Owner: -
    --

    ALTER INDEX public.measurements_pkey ATTACH PARTITION public.measurements_y2024_pkey;


    --
    -- Name: measurements_y2024_city_idx; Type: INDEX ATTACH; Schema: public; Owner: -
    --

    ALTER INDEX public.measurements_city_idx ATTACH PARTITION public.measurements_y2024_city_idx;


    --
    -- Name: orders orders_touch; Type: TRIGGER; Schema: public; Owner: -
    --

    CREATE TRIGGER orders_touch BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();


    --
    -- Name: orders orders_code_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE ONLY public.orders
        ADD CONSTRAINT orders_code_fkey FOREIGN KEY (customer_code) REFERENCES public.customers(unique_code);


    --
    -- Name: orders orders_customer_fk; Type: FK CONSTRAINT; Schema: public; Owner: -
    --

    ALTER TABLE public.orders
        ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES public.customers(id) NOT VALID;


    --
    -- Name: TABLE orders; Type: ACL; Schema: public; Owner: -
    --

    GRANT SELECT ON TABLE public.orders TO reporting;


    --
    -- PostgreSQL database dump complete
    --

    """#

  @Test func realisticPgDump15Excerpt() {
    let st = SchemaScript.split(Self.pgDump15)
    #expect(st.count == 43)
    #expect(st.filter { $0.kind == .set }.count == 12)
    #expect(st.first?.text == "SET statement_timeout = 0;\n")
    #expect(st.allSatisfy { $0.text.hasSuffix(";\n") })
    #expect(st.allSatisfy { !$0.text.hasPrefix("--") && !$0.text.hasPrefix("\n") })
    #expect(
      st.contains {
        $0.text
          == "CREATE DOMAIN public.positive_int AS integer\n\tCONSTRAINT positive_int_check CHECK ((VALUE > 0));\n"
      })
    #expect(
      st.contains {
        $0.text.hasPrefix("CREATE FUNCTION public.touch_updated_at()")
          && $0.text.hasSuffix("END;\n$$;\n")
      })
    #expect(
      st.contains {
        $0.text.hasPrefix("CREATE FUNCTION public.add_one(integer)")
          && $0.text.hasSuffix(" SELECT ($1 + 1);\nEND;\n")
      })

    let files = SchemaScript.partition(st)
    #expect(files.extensions == ["citext"])
    #expect(files.fkRequiredUniqueIndexes == [q("public", "customers_unique_code_idx")])
    #expect(
      files.indexes.filter { $0.kind != .set }.map { String($0.text.prefix(48)) } == [
        "CREATE INDEX measurements_city_idx ON ONLY publi",
        "CREATE INDEX measurements_y2024_city_idx ON publ",
        "CREATE INDEX orders_lower_code_idx ON public.ord",
        "ALTER INDEX public.measurements_city_idx ATTACH ",
      ])
    #expect(
      files.invalidConstraints.filter { $0.kind != .set }.map(\.kind) == [
        .notValidConstraint(
          ConstraintInfo(
            name: "orders_qty_check", table: q("public", "orders"), isForeignKey: false)),
        .notValidConstraint(
          ConstraintInfo(
            name: "orders_customer_fk", table: q("public", "orders"), isForeignKey: true)),
      ])
    let baseTexts = files.base.map(\.text)
    #expect(
      baseTexts.contains(
        "CREATE UNIQUE INDEX customers_unique_code_idx ON public.customers USING btree (unique_code);\n"
      ))
    #expect(
      baseTexts.contains(
        "ALTER INDEX public.measurements_pkey ATTACH PARTITION public.measurements_y2024_pkey;\n"))
    #expect(baseTexts.contains("COMMENT ON TABLE public.orders IS 'NOT VALID; CREATE INDEX';\n"))
    #expect(!baseTexts.contains { $0.contains("EXTENSION") || $0.hasPrefix("GRANT") })
    // Every file opens with the header SETs, so each is loadable alone.
    let header = Array(st.prefix(10))
    for file in [files.full, files.base, files.indexes, files.invalidConstraints] {
      #expect(Array(file.prefix(10)) == header)
    }
    #expect(files.full.count == st.count - 3)  // 2 extension statements + 1 GRANT dropped
    #expect(
      files.base.count + files.indexes.count + files.invalidConstraints.count == files.full.count
        + 2 * 12)
  }

  // MARK: statements that follow an index or a constraint

  @Test func indexAndConstraintDependentStatementsAreRecognised() {
    #expect(
      SchemaScript.classify("COMMENT ON INDEX \"S\".\"Idx Mixed\" IS 'x; NOT VALID';")
        == .indexDependent(index: q("S", "Idx Mixed")))
    #expect(
      SchemaScript.classify("ALTER INDEX public.\"uniq näme\" ALTER COLUMN 1 SET STATISTICS 500;")
        == .indexDependent(index: q("public", "uniq näme")))
    #expect(
      SchemaScript.classify("ALTER TABLE \"S\".\"naïve tåble\" CLUSTER ON \"Idx Mixed\";")
        == .indexDependent(index: q("S", "Idx Mixed")))
    #expect(
      SchemaScript.classify("ALTER TABLE ONLY s.t REPLICA IDENTITY USING INDEX ri;")
        == .replicaIdentityIndex(index: q("s", "ri")))
    #expect(
      SchemaScript.classify("COMMENT ON CONSTRAINT \"Chk\" ON \"S\".\"quo\"\"ted\" IS 'c';")
        == .constraintDependent(table: q("S", "quo\"ted"), name: "Chk", onDomain: false))
    #expect(
      SchemaScript.classify("COMMENT ON CONSTRAINT pos ON DOMAIN s.d IS 'c';")
        == .constraintDependent(table: q("s", "d"), name: "pos", onDomain: true))
    #expect(SchemaScript.classify("ALTER TABLE ONLY s.t ALTER COLUMN id SET DEFAULT 1;") == .other)
    #expect(SchemaScript.classify("COMMENT ON TABLE s.t IS 'CLUSTER ON i';") == .other)
  }

  @Test func dependentStatementsFollowTheirObjectIntoTheDeferredFiles() {
    let sql = """
      CREATE TABLE s.t (id integer NOT NULL, a integer, b integer);
      ALTER TABLE s.t ADD CONSTRAINT "Chk" CHECK ((a > 0)) NOT VALID;
      COMMENT ON CONSTRAINT "Chk" ON s.t IS 'deferred with its constraint';
      ALTER TABLE ONLY s.t ADD CONSTRAINT t_pkey PRIMARY KEY (id);
      COMMENT ON CONSTRAINT t_pkey ON s.t IS 'stays in base';
      CREATE INDEX t_a ON s.t USING btree (a);
      ALTER TABLE s.t CLUSTER ON t_a;
      COMMENT ON INDEX s.t_a IS 'deferred with its index';
      CREATE UNIQUE INDEX t_b ON s.t USING btree (b);
      ALTER INDEX s.t_b ALTER COLUMN 1 SET STATISTICS 100;
      ALTER TABLE ONLY s.t REPLICA IDENTITY USING INDEX t_b;
      """
    let files = SchemaScript.partition(SchemaScript.split(sql))
    let base = files.base.map(\.text).joined()
    let idx = files.indexes.map(\.text).joined()
    let inv = files.invalidConstraints.map(\.text).joined()
    #expect(
      inv.contains("'deferred with its constraint'")
        && !base.contains("'deferred with its constraint'"))
    #expect(base.contains("'stays in base'"))
    #expect(
      idx.contains("CLUSTER ON t_a") && idx.contains("'deferred with its index'")
        && !base.contains("t_a"))
    // The replica identity index stays in base with its statistics.
    #expect(
      base.contains("CREATE UNIQUE INDEX t_b") && base.contains("SET STATISTICS 100")
        && base.contains("REPLICA IDENTITY"))
    #expect(!idx.contains("t_b"))
    #expect(files.fkRequiredUniqueIndexes.isEmpty)
  }

  @Test func addedConstraintNamesTableAndPrimaryKey() {
    let st = SchemaScript.split(
      "ALTER TABLE ONLY \"S\".\"T t\"\n    ADD CONSTRAINT \"T t_pkey\" PRIMARY KEY (id);\n")
    let c = st.first.flatMap { SchemaScript.addedConstraint(in: $0) }
    #expect(c?.table == q("S", "T t") && c?.name == "T t_pkey" && c?.primaryKey == true)
    let u = SchemaScript.split("ALTER TABLE s.t ADD CONSTRAINT u UNIQUE (a);").first.flatMap {
      SchemaScript.addedConstraint(in: $0)
    }
    #expect(u?.primaryKey == false && u?.name == "u")
  }
}
