import Foundation

/// Human and JSON rendering of operation results.
public enum Render {
  /// Whether to color output (stdout is a terminal and NO_COLOR is unset).
  nonisolated(unsafe) public static var color: Bool =
    isatty(1) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

  static func paint(_ s: String, _ code: String) -> String {
    color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s
  }
  public static func green(_ s: String) -> String { paint(s, "32") }
  public static func red(_ s: String) -> String { paint(s, "31") }
  public static func yellow(_ s: String) -> String { paint(s, "33") }
  public static func blue(_ s: String) -> String { paint(s, "34") }

  /// A simple aligned table (tabulate "simple" style). `marks[r][c]` = false paints a cell red.
  public static func table(_ headers: [String], _ rows: [[String]], bad: [[Bool]] = []) -> String {
    var widths = headers.map(\.count)
    for r in rows {
      for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
    }
    func line(_ cells: [String], _ badRow: [Bool]?) -> String {
      cells.enumerated().map { i, c in
        let padded = c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        if let badRow, i < badRow.count { return badRow[i] ? red(padded) : padded }
        return padded
      }.joined(separator: "  ").replacingOccurrences(
        of: "\\s+$", with: "", options: .regularExpression)
    }
    var out = [yellow(line(headers, nil))]
    out.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
    for (i, r) in rows.enumerated() { out.append(line(r, i < bad.count ? bad[i] : nil)) }
    return out.joined(separator: "\n") + "\n"
  }

  /// The records of a result: one for a single db, each database's for a dc.
  public static func records(_ result: Value) -> [Value] {
    if let dbs = result["databases"]?.arrayValue { return dbs }
    return [result]
  }

  /// Errors of failed records, one line each ("dc/db: message").
  public static func failures(_ result: Value) -> [String] {
    records(result).compactMap { r in
      guard r["ok"]?.boolValue == false, let e = r["error"] else { return nil }
      let dc = r["dc"]?.stringValue ?? ""
      let db = r["db"]?.stringValue ?? ""
      return "\(dc)/\(db): \(e["message"]?.stringValue ?? "failed")"
    }
  }

  /// Human output for a command's result.
  public static func human(_ result: Value, spec: OperationSpec?) -> String {
    let recs = records(result).filter { $0["error"] == nil }
    guard let spec else {
      // `belt run`: flow runbooks print their own report and return a record; show other values.
      if result.isNull || (result["ok"] != nil && result["command"] != nil) { return "" }
      return pretty(result) + "\n"
    }
    if let render = spec.render { return render(recs) }
    if !spec.columns.isEmpty {
      let rows = recs.map { r in spec.columns.map { r[$0.1]?.display ?? "" } }
      let bad = recs.map { r in
        spec.columns.map { r[$0.1] == .bool(false) || (r[$0.1]?.stringValue == "down") }
      }
      return table(spec.columns.map(\.0), rows, bad: bad)
    }
    return recs.map { r in
      let status = r["ok"]?.boolValue == false ? red("FAILED") : green("ok")
      var line = "\(r["dc"]?.display ?? "")/\(r["db"]?.display ?? ""): \(status)"
      if let msg = r["message"]?.stringValue { line += " — \(msg)" }
      if let ms = r["duration_ms"]?.intValue { line += " (\(ms) ms)" }
      return line + "\n"
    }.joined()
  }

  static func precheck(_ recs: [Value]) -> String {
    var out = ""
    for side in ["src", "dst"] {
      out += blue("\n\(side == "src" ? "Source" : "Destination") DB Configuration Summary") + "\n"
      let names = recs.first?[side]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
      var rows: [[String]] = []
      var bad: [[Bool]] = []
      for r in recs {
        let checks = r[side]?.arrayValue ?? []
        rows.append([r["db"]?.display ?? ""] + checks.map { $0["value"]?.display ?? "" })
        bad.append([false] + checks.map { $0["ok"]?.boolValue == false })
      }
      out += table(["database"] + names, rows, bad: bad)
      let problems = recs.flatMap { r in
        (r[side]?.arrayValue ?? []).compactMap { c -> String? in
          guard c["ok"]?.boolValue == false else { return nil }
          return
            "  \(r["db"]?.display ?? ""): \(c["name"]?.display ?? ""): \(c["why"]?.display ?? "")"
        }
      }
      if !problems.isEmpty {
        out += red("Problems:") + "\n" + problems.joined(separator: "\n") + "\n"
      }
    }
    for r in recs {
      out +=
        blue(
          "\nTable Compatibility Summary (\(r["db"]?.display ?? ""), schema \(r["schema_name"]?.display ?? ""))"
        ) + "\n"
      let tables = r["tables"]?.arrayValue ?? []
      out += table(
        ["table name", "can replicate", "replication type", "owner", "note"],
        tables.map {
          [
            $0["name"]?.display ?? "",
            $0["replication"]?.stringValue == "unavailable" ? "False" : "True",
            $0["replication"]?.display ?? "", $0["owner"]?.display ?? "", $0["why"]?.display ?? "",
          ]
        },
        bad: tables.map {
          [false, $0["replication"]?.stringValue == "unavailable", false, false, false]
        })
      let seqs = r["sequences"]?.arrayValue ?? []
      out += yellow("Sequence Compatibility Summary") + "\n"
      out += table(
        ["sequence name", "owner", "note"],
        seqs.map {
          [$0["name"]?.display ?? "", $0["owner"]?.display ?? "", $0["why"]?.display ?? ""]
        })
      if let lo = r["large_objects_strategy"]?.stringValue {
        out += yellow("Large Objects") + "\n  " + lo + "\n"
      }
      let budget = r["server_budget"]?.arrayValue ?? []
      if !budget.isEmpty {
        out += yellow("Server Budget (every database of the dc on this pair's servers)") + "\n"
        out += table(
          ["check", "value", "ok", "note"],
          budget.map {
            [
              $0["name"]?.display ?? "", $0["value"]?.display ?? "", $0["ok"]?.display ?? "",
              $0["why"]?.display ?? "",
            ]
          }, bad: budget.map { [false, false, $0["ok"]?.boolValue == false, false] })
      }
      let exts = r["extensions_needed"]?.arrayValue ?? []
      if !exts.isEmpty {
        out += yellow("Extensions the schema needs") + "\n"
        out += table(
          ["extension", "schema", "needed by", "on dst"],
          exts.map {
            [
              $0["name"]?.display ?? "", $0["schema"]?.display ?? "",
              ($0["needed_by"]?.arrayValue ?? []).map(\.display).joined(separator: "; "),
              $0["installed_on_dst"]?.boolValue == true
                ? "installed"
                : $0["available_on_dst"]?.boolValue == true ? "available" : "NOT AVAILABLE",
            ]
          }, bad: exts.map { [false, false, false, $0["available_on_dst"]?.boolValue == false] })
      }
      if let major = r["pg_dump"]?["major"], let path = r["pg_dump"]?["path"] {
        out += "Schema dumps: pg_dump \(major.display) (\(path.display))\n"
      }
      for a in r["alerts"]?.arrayValue ?? [] { out += red("ALERT: \(a.display)") + "\n" }
      for w in r["warnings"]?.arrayValue ?? [] { out += yellow("WARNING: \(w.display)") + "\n" }
      if let missing = r["extensions_missing_on_dst"]?.arrayValue, !missing.isEmpty {
        out +=
          yellow("Extensions on src but not on dst: ")
          + missing.map(\.display).joined(separator: ", ") + "\n"
      }
    }
    return out
  }

  /// A Lua-style pretty printer with sorted keys, for the REPL.
  public static func pretty(_ v: Value, indent: Int = 0) -> String {
    let pad = String(repeating: "  ", count: indent + 1)
    let close = String(repeating: "  ", count: indent)
    switch v {
    case .null: return "nil"
    case .string(let s): return Value.jsonQuote(s)
    case .array(let a):
      if a.isEmpty { return "{}" }
      if a.allSatisfy({
        if case .object = $0 { return false }; if case .array = $0 { return false }; return true
      }) {
        let inline = "{ " + a.map { pretty($0) }.joined(separator: ", ") + " }"
        if inline.count < 80 { return inline }
      }
      return "{\n" + a.map { pad + pretty($0, indent: indent + 1) }.joined(separator: ",\n") + "\n"
        + close + "}"
    case .object(let o):
      if o.isEmpty { return "{}" }
      let sorted = o.sorted { $0.0 < $1.0 }
      return "{\n"
        + sorted.map { k, val in
          let key =
            k.range(of: "^[A-Za-z_][A-Za-z0-9_]*$", options: .regularExpression) != nil
            ? k : "[\(Value.jsonQuote(k))]"
          return pad + key + " = " + pretty(val, indent: indent + 1)
        }.joined(separator: ",\n") + "\n" + close + "}"
    default: return v.display == "True" ? "true" : v.display == "False" ? "false" : v.display
    }
  }
}
