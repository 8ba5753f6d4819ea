// What one statement of a pg_dump script is, read from its tokens (see SchemaScript.swift).

import Foundation

// MARK: - Classification over tokens

struct TokenView {
  let t: [Token]
  init(_ tokens: [Token]) { self.t = tokens }

  func word(_ k: Int) -> String? {
    guard k >= 0, k < t.count, t[k].kind == .word else { return nil }
    return t[k].value
  }
  func isWord(_ k: Int, _ w: String) -> Bool { word(k) == w }
  func isPunct(_ k: Int, _ p: String) -> Bool {
    k >= 0 && k < t.count && t[k].kind == .punct && t[k].value == p
  }
  func ident(_ k: Int) -> String? {
    guard k >= 0, k < t.count else { return nil }
    switch t[k].kind {
    case .word, .quotedIdent: return t[k].value
    default: return nil
    }
  }

  /// `ident ( . ident )*` — returns the last two components and the index after the name.
  func qualifiedName(_ k: Int) -> (QualifiedName, Int)? {
    guard let first = ident(k) else { return nil }
    var parts = [first]
    var j = k + 1
    while isPunct(j, "."), let next = ident(j + 1) {
      parts.append(next)
      j += 2
    }
    let name = parts[parts.count - 1]
    let schema = parts.count >= 2 ? parts[parts.count - 2] : nil
    return (QualifiedName(schema: schema, name: name), j)
  }

  /// Skips `IF NOT EXISTS` / `IF EXISTS` at `k`.
  func skipIfExists(_ k: Int) -> Int {
    if isWord(k, "if") && isWord(k + 1, "not") && isWord(k + 2, "exists") { return k + 3 }
    if isWord(k, "if") && isWord(k + 1, "exists") { return k + 2 }
    return k
  }

  func classify() -> SQLStatement.Kind {
    guard let first = word(0) else { return .other }
    switch first {
    case "set":
      return .set
    case "select":
      if isWord(1, "set_config") && isPunct(2, "(") { return .set }
      if isWord(1, "pg_catalog") && isPunct(2, ".") && isWord(3, "set_config") && isPunct(4, "(") {
        return .set
      }
      return .other
    case "grant", "revoke":
      return .grantOrRevoke
    case "comment":
      if isWord(1, "on") && isWord(2, "extension") { return .commentOnExtension }
      if isWord(1, "on") && isWord(2, "index"), let (idx, j) = qualifiedName(3), isWord(j, "is") {
        return .indexDependent(index: idx)
      }
      if isWord(1, "on") && isWord(2, "constraint"), let name = ident(3), isWord(4, "on") {
        let onDomain = isWord(5, "domain")
        if let (table, j) = qualifiedName(onDomain ? 6 : 5), isWord(j, "is") {
          return .constraintDependent(table: table, name: name, onDomain: onDomain)
        }
      }
      return .other
    case "create":
      return classifyCreate()
    case "alter":
      return classifyAlter()
    default:
      return .other
    }
  }

  func classifyCreate() -> SQLStatement.Kind {
    var k = 1
    if isWord(k, "or") && isWord(k + 1, "replace") { k += 2 }
    if isWord(k, "extension") {
      let j = skipIfExists(k + 1)
      if let name = ident(j) { return .createExtension(name: name) }
      return .other
    }
    if isWord(k, "schema") {
      let j = skipIfExists(k + 1)
      if isWord(j, "authorization"), let role = ident(j + 1) { return .createSchema(name: role) }
      if let name = ident(j) { return .createSchema(name: name) }
      return .other
    }
    if isWord(k, "unique") || isWord(k, "index") {
      if let info = parseIndex() { return .index(info) }
    }
    return .other
  }

  func parseIndex() -> IndexInfo? {
    var k = 1
    var unique = false
    if isWord(k, "unique") {
      unique = true
      k += 1
    }
    guard isWord(k, "index") else { return nil }
    k += 1
    if isWord(k, "concurrently") { k += 1 }
    k = skipIfExists(k)
    guard !isWord(k, "on") else { return nil }  // unnamed index: cannot manage it
    guard let (rawName, afterName) = qualifiedName(k) else { return nil }
    k = afterName
    guard isWord(k, "on") else { return nil }
    k += 1
    var onOnly = false
    if isWord(k, "only") {
      onOnly = true
      k += 1
    }
    guard let (table, afterTable) = qualifiedName(k) else { return nil }
    k = afterTable
    if isWord(k, "using"), ident(k + 1) != nil { k += 2 }
    guard isPunct(k, "(") else { return nil }
    // Collect the top-level elements of the column list.
    var elements: [[Token]] = [[]]
    var depth = 0
    var j = k + 1
    var closed = false
    while j < t.count {
      let tok = t[j]
      if tok.kind == .punct && tok.value == "(" { depth += 1 }
      if tok.kind == .punct && tok.value == ")" {
        if depth == 0 {
          closed = true
          break
        }
        depth -= 1
      }
      if depth == 0 && tok.kind == .punct && tok.value == "," {
        elements.append([])
      } else {
        elements[elements.count - 1].append(tok)
      }
      j += 1
    }
    guard closed else { return nil }
    var columns: [String]? = []
    for el in elements {
      guard let col = plainColumn(el) else {
        columns = nil
        break
      }
      columns?.append(col)
    }
    // WHERE after the column list at depth 0 → partial index.
    var isPartial = false
    depth = 0
    j += 1
    while j < t.count {
      if isPunct(j, "(") {
        depth += 1
      } else if isPunct(j, ")") {
        if depth > 0 { depth -= 1 }
      } else if depth == 0 && isWord(j, "where") {
        isPartial = true
        break
      }
      j += 1
    }
    let name = QualifiedName(schema: rawName.schema ?? table.schema, name: rawName.name)
    return IndexInfo(
      name: name, table: table, unique: unique, onOnly: onOnly, columns: columns,
      isPartial: isPartial)
  }

  /// An index element that is a plain column: an identifier optionally followed by
  /// `COLLATE x`, an operator class (possibly qualified), `ASC|DESC`, `NULLS FIRST|LAST`.
  func plainColumn(_ el: [Token]) -> String? {
    guard let head = el.first, head.kind == .word || head.kind == .quotedIdent else { return nil }
    for (idx, tok) in el.enumerated().dropFirst() {
      switch tok.kind {
      case .word, .quotedIdent: continue
      case .punct where tok.value == "." && idx > 1: continue
      default: return nil
      }
    }
    return head.value
  }

  func classifyAlter() -> SQLStatement.Kind {
    if isWord(1, "default") && isWord(2, "privileges") { return .grantOrRevoke }
    if isAlterOwner() { return .alterOwner }
    if isWord(1, "index") {
      let k = skipIfExists(2)
      if let (parent, j) = qualifiedName(k), isWord(j, "attach"), isWord(j + 1, "partition"),
        let (child, _) = qualifiedName(j + 2)
      {
        // pg_dump qualifies both; an unqualified child lives in the parent's schema.
        let c = QualifiedName(schema: child.schema ?? parent.schema, name: child.name)
        return .attachIndexPartition(parentIndex: parent, childIndex: c)
      }
      if let (idx, j) = qualifiedName(k), j < t.count { return .indexDependent(index: idx) }
      return .other
    }
    if isWord(1, "table") || isWord(1, "domain") {
      if let info = parseNotValidConstraint() { return .notValidConstraint(info) }
    }
    if isWord(1, "table") {
      var k = skipIfExists(2)
      if isWord(k, "only") { k += 1 }
      if let (table, j) = qualifiedName(k) {
        // pg_dump names the index unqualified here: it lives in the table's schema.
        if isWord(j, "cluster"), isWord(j + 1, "on"), let (idx, end) = qualifiedName(j + 2),
          end == t.count
        {
          return .indexDependent(
            index: QualifiedName(schema: idx.schema ?? table.schema, name: idx.name))
        }
        if isWord(j, "replica"), isWord(j + 1, "identity"), isWord(j + 2, "using"),
          isWord(j + 3, "index"),
          let (idx, end) = qualifiedName(j + 4), end == t.count
        {
          return .replicaIdentityIndex(
            index: QualifiedName(schema: idx.schema ?? table.schema, name: idx.name))
        }
      }
    }
    return .other
  }

  /// `ALTER TABLE [IF EXISTS] [ONLY] t ADD CONSTRAINT c <kind>`: table, name and whether it is a primary key.
  func addedConstraint() -> (table: QualifiedName, name: String, primaryKey: Bool)? {
    guard isWord(0, "alter"), isWord(1, "table") else { return nil }
    var k = skipIfExists(2)
    if isWord(k, "only") { k += 1 }
    guard let (table, j) = qualifiedName(k) else { return nil }
    k = j
    if isPunct(k, "*") { k += 1 }
    guard isWord(k, "add"), isWord(k + 1, "constraint"), let name = ident(k + 2) else { return nil }
    return (table, name, isWord(k + 3, "primary") && isWord(k + 4, "key"))
  }

  /// `ALTER <object> <name> OWNER TO <role>` (and not `RENAME [COLUMN] owner TO x`).
  func isAlterOwner() -> Bool {
    let n = t.count
    guard n >= 5, isWord(n - 3, "owner"), isWord(n - 2, "to"), ident(n - 1) != nil else {
      return false
    }
    if let before = word(n - 4), ["rename", "column", "constraint", "attribute"].contains(before),
      !isPunct(n - 5, ".")
    {
      return false
    }
    return true
  }

  func parseNotValidConstraint() -> ConstraintInfo? {
    let onDomain = isWord(1, "domain")
    var k = skipIfExists(2)
    if !onDomain && isWord(k, "only") { k += 1 }
    guard let (table, afterTable) = qualifiedName(k) else { return nil }
    k = afterTable
    if !onDomain && isPunct(k, "*") { k += 1 }
    guard isWord(k, "add"), isWord(k + 1, "constraint"), let name = ident(k + 2) else { return nil }
    k += 3
    let isFK = isWord(k, "foreign") && isWord(k + 1, "key")
    var depth = 0
    var notValid = false
    while k < t.count {
      if isPunct(k, "(") {
        depth += 1
      } else if isPunct(k, ")") {
        if depth > 0 { depth -= 1 }
      } else if depth == 0 && isWord(k, "not") && isWord(k + 1, "valid") {
        notValid = true
        break
      }
      k += 1
    }
    guard notValid else { return nil }
    return ConstraintInfo(name: name, table: table, isForeignKey: isFK, onDomain: onDomain)
  }

  /// Every `REFERENCES table (cols)` in the statement (FOREIGN KEY table constraints and
  /// inline column references). References without a column list are skipped (they
  /// target the primary key, which is a constraint, never a standalone index).
  func foreignKeyReferences() -> [(table: QualifiedName, columns: [String])] {
    var out: [(table: QualifiedName, columns: [String])] = []
    var k = 0
    while k < t.count {
      defer { k += 1 }
      guard isWord(k, "references"), let (table, j) = qualifiedName(k + 1), isPunct(j, "(") else {
        continue
      }
      var cols: [String] = []
      var m = j + 1
      var ok = false
      while m < t.count {
        guard let c = ident(m) else { break }
        cols.append(c)
        if isPunct(m + 1, ")") {
          ok = true
          break
        }
        guard isPunct(m + 1, ",") else { break }
        m += 2
      }
      if ok && !cols.isEmpty { out.append((table, cols)) }
    }
    return out
  }

  /// For `SET standard_conforming_strings = on|off`, the new value.
  func standardConformingStringsSetting() -> Bool? {
    var k = 1
    if isWord(k, "session") || isWord(k, "local") { k += 1 }
    guard isWord(k, "standard_conforming_strings"), isPunct(k + 1, "=") || isWord(k + 1, "to"),
      k + 2 < t.count
    else { return nil }
    let v = t[k + 2].value.lowercased()
    switch v {
    case "on", "true", "yes", "1": return true
    case "off", "false", "no", "0": return false
    default: return nil
    }
  }

  /// See ``SchemaScript/settingName(of:)``.
  func settingName() -> String? {
    if isWord(0, "set") {
      var k = 1
      if isWord(k, "session") || isWord(k, "local") { k += 1 }
      guard let name = ident(k), isPunct(k + 1, "=") || isWord(k + 1, "to") else { return nil }
      return name.lowercased()
    }
    var k = 1
    if isWord(k, "pg_catalog") && isPunct(k + 1, ".") { k += 2 }
    guard isWord(0, "select"), isWord(k, "set_config"), isPunct(k + 1, "("), k + 2 < t.count,
      t[k + 2].kind == .string
    else { return nil }
    return t[k + 2].value.lowercased()
  }

  /// `COPY ... FROM stdin` (followed by inline data in the script).
  func isCopyFromStdin() -> Bool {
    guard isWord(0, "copy") else { return false }
    for k in 0..<t.count where isWord(k, "from") && isWord(k + 1, "stdin") { return true }
    return false
  }
}
