// The lexer of pg_dump scripts (see SchemaScript.swift): tokens that never let string
// literals, dollar-quoted bodies, quoted identifiers or comments decide a statement boundary.

import Foundation

// MARK: - Tokens

struct Token {
  enum Kind: Equatable {
    case word  // unquoted identifier or keyword; value is ASCII-lower-cased
    case quotedIdent  // "..."; value is unescaped
    case string  // '...', E'...'; value is the (approximately) unescaped body
    case dollarString  // $tag$...$tag$
    case number
    case param  // $1
    case punct  // single byte; value is that character
  }
  var kind: Kind
  var start: Int
  var end: Int
  var value: String
}

enum Byte {
  static let nl: UInt8 = 0x0A
  static let cr: UInt8 = 0x0D
  static let space: UInt8 = 0x20
  static let tab: UInt8 = 0x09
  static let ff: UInt8 = 0x0C
  static let vt: UInt8 = 0x0B
  static let squote: UInt8 = 0x27
  static let dquote: UInt8 = 0x22
  static let dollar: UInt8 = 0x24
  static let minus: UInt8 = 0x2D
  static let slash: UInt8 = 0x2F
  static let star: UInt8 = 0x2A
  static let backslash: UInt8 = 0x5C
  static let semicolon: UInt8 = 0x3B
  static let dot: UInt8 = 0x2E
  static let underscore: UInt8 = 0x5F

  static func isSpace(_ c: UInt8) -> Bool {
    c == space || c == tab || c == nl || c == cr || c == ff || c == vt
  }
  static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
  static func isAlpha(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
  static func isIdentStart(_ c: UInt8) -> Bool { isAlpha(c) || c == underscore || c >= 0x80 }
  static func isIdentCont(_ c: UInt8) -> Bool { isIdentStart(c) || isDigit(c) || c == dollar }
  static func isTagCont(_ c: UInt8) -> Bool { isIdentStart(c) || isDigit(c) }
  static func lower(_ c: UInt8) -> UInt8 { (c >= 0x41 && c <= 0x5A) ? c + 0x20 : c }
}

// MARK: - Lexer

struct Lexer {
  let b: [UInt8]
  /// When false, plain '...' strings treat backslash as an escape (tracked from SET statements).
  var standardConformingStrings = true

  init(_ bytes: [UInt8]) { self.b = bytes }

  var count: Int { b.count }

  func text(_ from: Int, _ to: Int) -> String {
    String(decoding: b[from..<to], as: UTF8.self)
  }

  /// Skips whitespace, `--` comments and (nested) `/* */` comments.
  func skipTrivia(_ start: Int) -> Int {
    var i = start
    let n = b.count
    while i < n {
      let c = b[i]
      if Byte.isSpace(c) {
        i += 1
      } else if c == Byte.minus, i + 1 < n, b[i + 1] == Byte.minus {
        i += 2
        while i < n, b[i] != Byte.nl { i += 1 }
      } else if c == Byte.slash, i + 1 < n, b[i + 1] == Byte.star {
        i = skipBlockComment(i)
      } else {
        break
      }
    }
    return i
  }

  /// `i` points at `/*`; returns the index after the matching `*/` (or end of input).
  func skipBlockComment(_ start: Int) -> Int {
    var i = start + 2
    var depth = 1
    let n = b.count
    while i < n {
      if b[i] == Byte.slash, i + 1 < n, b[i + 1] == Byte.star {
        depth += 1
        i += 2
      } else if b[i] == Byte.star, i + 1 < n, b[i + 1] == Byte.slash {
        depth -= 1
        i += 2
        if depth == 0 { return i }
      } else {
        i += 1
      }
    }
    return n
  }

  /// Scans a single-quoted literal starting at the quote at `q`; returns (end, body).
  func scanString(_ q: Int, backslashEscapes: Bool) -> (Int, String) {
    var i = q + 1
    let n = b.count
    var body: [UInt8] = []
    while i < n {
      let c = b[i]
      if c == Byte.squote {
        if i + 1 < n, b[i + 1] == Byte.squote {
          body.append(Byte.squote)
          i += 2
          continue
        }
        return (i + 1, String(decoding: body, as: UTF8.self))
      }
      if backslashEscapes, c == Byte.backslash, i + 1 < n {
        body.append(b[i + 1])
        i += 2
        continue
      }
      body.append(c)
      i += 1
    }
    return (n, String(decoding: body, as: UTF8.self))
  }

  /// If a dollar-quote opening tag starts at `i`, returns the tag bytes (including both `$`).
  func dollarTag(at i: Int) -> [UInt8]? {
    let n = b.count
    guard i < n, b[i] == Byte.dollar else { return nil }
    var j = i + 1
    if j < n, b[j] == Byte.dollar { return [Byte.dollar, Byte.dollar] }
    guard j < n, Byte.isIdentStart(b[j]) else { return nil }
    j += 1
    while j < n, Byte.isTagCont(b[j]) { j += 1 }
    guard j < n, b[j] == Byte.dollar else { return nil }
    return Array(b[i...j])
  }

  /// Finds the end (exclusive) of a dollar-quoted string whose opening tag starts at `i`.
  func scanDollarString(_ i: Int, tag: [UInt8]) -> Int {
    let n = b.count
    let t = tag.count
    var j = i + t
    guard let first = tag.first else { return n }
    while j + t <= n {
      if b[j] == first {
        var k = 1
        while k < t, b[j + k] == tag[k] { k += 1 }
        if k == t { return j + t }
      }
      j += 1
    }
    return n
  }

  /// Lexes one token at `i` (which must not be trivia). Returns nil at end of input.
  func token(at i: Int) -> Token? {
    let n = b.count
    guard i < n else { return nil }
    let c = b[i]
    if c == Byte.squote {
      let (end, body) = scanString(i, backslashEscapes: !standardConformingStrings)
      return Token(kind: .string, start: i, end: end, value: body)
    }
    if c == Byte.dquote {
      var j = i + 1
      var body: [UInt8] = []
      while j < n {
        if b[j] == Byte.dquote {
          if j + 1 < n, b[j + 1] == Byte.dquote {
            body.append(Byte.dquote)
            j += 2
            continue
          }
          j += 1
          return Token(
            kind: .quotedIdent, start: i, end: j, value: String(decoding: body, as: UTF8.self))
        }
        body.append(b[j])
        j += 1
      }
      return Token(
        kind: .quotedIdent, start: i, end: n, value: String(decoding: body, as: UTF8.self))
    }
    if c == Byte.dollar {
      if i + 1 < n, Byte.isDigit(b[i + 1]) {
        var j = i + 1
        while j < n, Byte.isDigit(b[j]) { j += 1 }
        return Token(kind: .param, start: i, end: j, value: text(i, j))
      }
      if let tag = dollarTag(at: i) {
        let end = scanDollarString(i, tag: tag)
        return Token(kind: .dollarString, start: i, end: end, value: "")
      }
      return Token(kind: .punct, start: i, end: i + 1, value: "$")
    }
    if Byte.isIdentStart(c) {
      // E'...' / e'...' extended string with backslash escapes.
      if (c == 0x45 || c == 0x65), i + 1 < n, b[i + 1] == Byte.squote {
        let (end, body) = scanString(i + 1, backslashEscapes: true)
        return Token(kind: .string, start: i, end: end, value: body)
      }
      var j = i + 1
      while j < n, Byte.isIdentCont(b[j]) { j += 1 }
      let lowered = b[i..<j].map(Byte.lower)
      return Token(kind: .word, start: i, end: j, value: String(decoding: lowered, as: UTF8.self))
    }
    if Byte.isDigit(c) || (c == Byte.dot && i + 1 < n && Byte.isDigit(b[i + 1])) {
      var j = i + 1
      while j < n,
        Byte.isDigit(b[j]) || Byte.isAlpha(b[j]) || b[j] == Byte.dot || b[j] == Byte.underscore
      {
        // Stop before ".." (range-like) so `1..` is not swallowed oddly.
        if b[j] == Byte.dot, j + 1 < n, b[j + 1] == Byte.dot { break }
        j += 1
      }
      return Token(kind: .number, start: i, end: j, value: text(i, j))
    }
    return Token(kind: .punct, start: i, end: i + 1, value: String(UnicodeScalar(c)))
  }

  /// Lexes statement tokens from `start` until the terminating `;` (psql rules:
  /// only at parenthesis depth 0 and outside `BEGIN ... END` of a
  /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`). Returns the tokens (without the
  /// terminator), the end of the statement text and the position to continue from.
  func lexStatement(from start: Int) -> (tokens: [Token], textEnd: Int, next: Int, terminated: Bool)
  {
    var tokens: [Token] = []
    var i = start
    var parenDepth = 0
    var beginDepth = 0
    var identCount = 0
    var idents: [UInt8] = [0, 0, 0, 0]
    while true {
      i = skipTrivia(i)
      guard let tok = token(at: i) else { break }
      if tok.kind == .punct && tok.value == "\\" && startsLine(tok.start) {
        // A psql backslash line ends an unterminated statement (it is lexed as `.meta`).
        let end = tokens.last?.end ?? start
        return (tokens, end, tok.start, false)
      }
      i = tok.end
      if tok.kind == .punct {
        if tok.value == ";" {
          if parenDepth == 0 && beginDepth == 0 {
            return (tokens, tok.end, tok.end, true)
          }
        } else if tok.value == "(" {
          parenDepth += 1
        } else if tok.value == ")" {
          if parenDepth > 0 { parenDepth -= 1 }
        }
      } else if tok.kind == .word {
        let v = tok.value
        if ["create", "function", "procedure", "or", "replace"].contains(v),
          identCount < idents.count,
          let f = v.utf8.first
        {
          idents[identCount] = f
        }
        identCount += 1
        let isRoutine =
          idents[0] == UInt8(ascii: "c")
          && (idents[1] == UInt8(ascii: "f") || idents[1] == UInt8(ascii: "p")
            || (idents[1] == UInt8(ascii: "o") && idents[2] == UInt8(ascii: "r")
              && (idents[3] == UInt8(ascii: "f") || idents[3] == UInt8(ascii: "p"))))
        if isRoutine && parenDepth == 0 {
          if v == "begin" {
            beginDepth += 1
          } else if v == "case" {
            if beginDepth >= 1 { beginDepth += 1 }
          } else if v == "end" {
            if beginDepth > 0 { beginDepth -= 1 }
          }
        }
      }
      tokens.append(tok)
    }
    let end = tokens.last?.end ?? start
    return (tokens, end, b.count, false)
  }

  /// True when only spaces/tabs precede `i` on its line.
  func startsLine(_ i: Int) -> Bool {
    var j = i - 1
    while j >= 0 {
      if b[j] == Byte.nl { return true }
      if b[j] != Byte.space && b[j] != Byte.tab { return false }
      j -= 1
    }
    return true
  }

  /// Tokens of the first statement in the buffer (used to re-lex a single statement's text).
  func tokensOfFirstStatement() -> [Token] {
    let s = skipTrivia(0)
    guard s < b.count, b[s] != Byte.backslash else { return [] }
    return lexStatement(from: s).tokens
  }

  /// Splits the whole buffer into statements.
  mutating func splitAll() -> [SQLStatement] {
    var out: [SQLStatement] = []
    var i = 0
    let n = b.count
    while true {
      i = skipTrivia(i)
      guard i < n else { break }
      if b[i] == Byte.backslash {
        var j = i
        while j < n, b[j] != Byte.nl { j += 1 }
        out.append(SQLStatement(text: text(i, j) + "\n", kind: .meta))
        i = min(j + 1, n)
        continue
      }
      let r = lexStatement(from: i)
      let view = TokenView(r.tokens)
      let kind = view.classify()
      var stmtText = text(i, r.textEnd) + "\n"
      i = r.next
      if kind == .set, let on = view.standardConformingStringsSetting() {
        standardConformingStrings = on
      }
      if r.terminated, view.isCopyFromStdin() {
        // COPY ... FROM stdin; is followed by data lines up to a line "\.".
        var j = i
        while j < n, b[j] != Byte.nl { j += 1 }
        j = min(j + 1, n)
        let dataStart = j
        var dataEnd = n
        while j < n {
          var e = j
          while e < n, b[e] != Byte.nl { e += 1 }
          var lineEnd = e
          if lineEnd > j, b[lineEnd - 1] == Byte.cr { lineEnd -= 1 }
          if lineEnd - j == 2, b[j] == Byte.backslash, b[j + 1] == Byte.dot {
            dataEnd = min(e + 1, n)
            break
          }
          j = min(e + 1, n)
        }
        if dataStart < dataEnd {
          stmtText += text(dataStart, dataEnd)
          if !stmtText.hasSuffix("\n") { stmtText += "\n" }
        }
        i = dataEnd
      }
      out.append(SQLStatement(text: stmtText, kind: kind))
    }
    return out
  }
}
