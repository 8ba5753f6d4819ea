import BeltRunbooks
import Foundation
import Testing

@testable import BeltRuntime

/// What is declared once and generated everywhere else: the error codes, the Lua helpers' docs,
/// the flow runbooks' options.
@Suite struct WrittenOnceTests {
  static let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  static func read(_ path: String) throws -> String {
    try String(contentsOf: package.appendingPathComponent(path), encoding: .utf8)
  }

  /// Every `public static let x = Code(rawValue: "...")` of BeltError.Code is in allCases (the
  /// list the docs are generated from), and nothing else is.
  @Test func allCasesListsEveryDeclaredCode() throws {
    let source = try Self.read("Sources/BeltRuntime/Core/BeltError.swift")
    let declared = source.split(separator: "\n").compactMap { line -> String? in
      guard line.contains("public static let"),
        let r = line.range(of: #"Code\(rawValue: "([a-z_]+)"\)"#, options: .regularExpression)
      else { return nil }
      return String(line[r].dropFirst("Code(rawValue: \"".count).dropLast(2))
    }
    #expect(!declared.isEmpty)
    #expect(Set(declared) == Set(BeltError.Code.allCases.map(\.rawValue)), "\(declared)")
    #expect(declared.count == BeltError.Code.allCases.count)
  }

  /// The shipped runbooks/belt.meta.lua names exactly the codes of BeltError.Code.
  @Test func metaNamesExactlyTheErrorCodes() throws {
    let meta = try Self.read("runbooks/belt.meta.lua")
    let line = try #require(
      meta.split(separator: "\n").first { $0.hasPrefix("---@field code string") })
    let named = line.dropFirst("---@field code string".count).trimmingCharacters(in: .whitespaces)
      .split(separator: "|").map(String.init)
    #expect(named == BeltError.Code.allCases.map(\.rawValue))
    #expect(
      LuaDocs.text().contains(BeltError.Code.allCases.map(\.rawValue).joined(separator: ", ")))
  }

  /// A shipped runbook raises only codes of BeltError.Code (a code scripts branch on is public).
  @Test func shippedRunbooksRaiseOnlyDeclaredCodes() throws {
    let known = Set(BeltError.Code.allCases.map(\.rawValue))
    var raised = 0
    for (name, source) in RunbookSources.files where !name.hasSuffix(".meta.lua") {
      for pattern in [#"belt\.error\("([a-z_]+)""#, #"code = "([a-z_]+)""#] {
        let regex = try NSRegularExpression(pattern: pattern)
        for m in regex.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
          let code = (source as NSString).substring(with: m.range(at: 1))
          raised += 1
          #expect(
            known.contains(code), "\(name) raises \(code), which BeltError.Code does not declare")
        }
      }
    }
    #expect(raised > 10, "the patterns found the runbooks' errors")
  }

  /// Every public function of the `belt` table is an operation or one of LuaDocs.helpers, and
  /// every helper documented exists.
  @Test func everyPublicFunctionIsDocumentedOnce() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local names = {}
        for k, v in pairs(belt) do
          if type(v) == "function" and not k:find("^_") then names[#names + 1] = k end
        end
        table.sort(names)
        return names
        """, chunkName: "=t", args: [])
    let functions = Set(try #require(r.first?.arrayValue).compactMap(\.stringValue))
    let operations = Set(OperationRegistry.all.map(\.name))
    let helpers = LuaDocs.helpers.map(\.name)
    #expect(Set(helpers).count == helpers.count, "a helper documented twice")
    #expect(functions.subtracting(operations) == Set(helpers))
    #expect(operations.isSubset(of: functions))
  }

  /// Each flow runbook uses exactly the options it declares in runbooks/_options.lua (an `o.key`
  /// of its own), and its header no longer lists them a second time.
  @Test func flowRunbooksUseTheirDeclaredOptions() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local out = {}
        for name, decl in pairs(belt.require_lib().declared) do
          local keys = {}
          for _, d in ipairs(decl) do keys[#keys + 1] = d[1] end
          out[name] = keys
        end
        return out
        """, chunkName: "=t", args: [])
    guard case .object(let declared)? = r.first else {
      Issue.record("no declarations: \(r)"); return
    }
    #expect(Set(declared.map(\.0)) == ["migrate.lua", "cutover.lua", "rollback.lua"])
    let regex = try NSRegularExpression(pattern: #"\bo\.([a-z_]+)"#)
    for (name, keys) in declared {
      let source = try #require(Runbooks.source(named: name))
      let used = Set(
        regex.matches(in: source, range: NSRange(source.startIndex..., in: source)).map {
          (source as NSString).substring(with: $0.range(at: 1))
        })
      let keys = Set(try #require(keys.arrayValue).compactMap(\.stringValue))
      #expect(
        used == keys,
        "\(name): uses \(used.subtracting(keys).sorted()) undeclared, declares \(keys.subtracting(used).sorted()) unused"
      )
      #expect(
        source.contains("lib.options(\"\(name)\", opts)"),
        "\(name) takes its options from the declaration")
      #expect(!source.contains("-- Options (after --):"), "\(name) lists its options a second time")
    }
  }

  /// A command's human output is its spec's: the renderer travels with the OperationSpec.
  @Test func renderersAreOnTheirSpecs() throws {
    let rendered = Set(OperationRegistry.all.filter { $0.render != nil }.map(\.name))
    #expect(
      rendered == [
        "src_dsn", "dst_dsn", "check_pkeys", "check_connectivity", "precheck", "status",
        "diff_sequences",
      ])
    let dsn = try #require(OperationRegistry.find("src_dsn"))
    #expect(
      Render.human(.object([("dc", "d"), ("db", "x"), ("dsn", "host=h")]), spec: dsn) == "host=h\n")
    let pkeys = try #require(OperationRegistry.find("check_pkeys"))
    let text = Render.human(
      .object([("dc", "d"), ("db", "x"), ("has_pkey", .array(["t"])), ("no_pkey", .array([]))]),
      spec: pkeys)
    #expect(text.hasPrefix("Analyzed table pkeys for x in d:\n    has pkey: "), "\(text)")
  }

  /// lib.options takes a declaration ({key, default, help}) or, for operators' runbooks written
  /// before, a table {key = default}; an undeclared key is refused either way.
  @Test func libOptionsTakesADeclarationOrADefaultsTable() throws {
    let (rt, _) = try makeRuntime()
    let r = try rt.run(
      source: """
        local lib = belt.require_lib()
        local a = lib.options("mine.lua", {x = 5}, {{"x", 1, "an x"}, {"y", "2s", "a y"}})
        local b = lib.options("mine.lua", {x = 5}, {x = 1, y = "2s"})
        local ok, err = pcall(lib.options, "mine.lua", {z = 1}, {x = 1})
        local ok2, err2 = pcall(lib.options, "cutover.lua", {drain_timeut = "1s"})
        return a.x, a.y, b.x, b.y, ok, err.code, ok2, tostring(err2.message)
        """, chunkName: "=t", args: [])
    #expect(r[0] == 5 && r[1] == "2s" && r[2] == 5 && r[3] == "2s", "\(r)")
    #expect(r[4] == false && r[5] == "bad_argument")
    #expect(
      r[6] == false && r[7].stringValue?.contains("unknown option 'drain_timeut'") == true, "\(r)")
  }
}
