import Testing

@testable import BeltRuntime

@Suite struct SchemaDiffCastTests {
  @Test func castPlacementDifferencesAreEquivalent() {
    let src = #"CONSTRAINT "g" CHECK (((gender)::text = ANY ((ARRAY['male'::character varying, 'female'::character varying])::text[])))"#
    let dst = #"CONSTRAINT "g" CHECK (((gender)::text = ANY (ARRAY[('male'::character varying)::text, ('female'::character varying)::text])))"#
    #expect(SchemaDiff.castInsensitive(src) == SchemaDiff.castInsensitive(dst))
  }

  @Test func realDifferencesStayDifferent() {
    let a = #"CHECK ((qty > 0))"#
    let b = #"CHECK ((qty >= 0))"#
    #expect(SchemaDiff.castInsensitive(a) != SchemaDiff.castInsensitive(b))
    #expect(SchemaDiff.castInsensitive("x integer NOT NULL") != SchemaDiff.castInsensitive("x bigint NOT NULL"))
    #expect(SchemaDiff.castInsensitive("DEFAULT 'a'::text") != SchemaDiff.castInsensitive("DEFAULT 'b'::text"))
  }
}
