import Foundation

/// The journal of one flow (cutover.lua, rollback.lua or an operator's runbook) for one pair
/// (design.md §8): `configs/<dc>/<db>/<flow>.journal.json`, beside the pair's config.
///
/// It holds the latest run of the flow: its state (`in_progress`, `done`, `compensated`,
/// `rolled_back`), run-level data (the command that started it, when the downtime began) and
/// one entry per step with its start, end, status and data. A step records what a resume
/// needs before it acts (``begin(_:dc:db:flow:step:data:runData:)``); the operations it runs
/// add their own facts to the open step (``OpenStep/note(_:_:)``: the gate's LSN target, the
/// PK-less tables being copied). Every change rewrites the file atomically (temp file, fsync,
/// rename), so a SIGKILL at any instant leaves the previous version or the new one. Earlier
/// runs are kept, summarised, under `previous`.
public enum Journal {
  /// Serialises read-modify-write of journal files inside this process (the parts of `sync`
  /// note from several threads).
  private static let lock = NSLock()

  /// Runs kept in `previous`.
  static let keptRuns = 20

  /// The file of a flow's journal.
  public static func path(_ store: ConfigStore, dc: String, db: String, flow: String) -> String {
    "\(store.root)/configs/\(dc)/\(db)/\(flow).journal.json"
  }

  /// Rejects flow names that are not a plain word (they become a file name).
  static func checkFlow(_ flow: String) throws {
    let ok =
      !flow.isEmpty && flow.count <= 64
      && flow.unicodeScalars.allSatisfy {
        CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_"
      }
    if !ok {
      throw BeltError(
        .badArgument,
        "invalid journal flow name \(Value.jsonQuote(flow)) (letters, digits, - and _)")
    }
  }

  /// The journal document, nil when the flow never ran for this pair.
  /// - Throws: ``BeltError`` `config_invalid` naming the file when it is not valid JSON.
  static func read(_ path: String) throws -> Value? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    do {
      return try JSONParser.parse(String(decoding: data, as: UTF8.self))
    } catch {
      throw BeltError(
        .configInvalid,
        "\(path): not a valid journal (\(error)); move it away to start the flow afresh")
    }
  }

  /// Reads, changes and atomically rewrites a journal.
  @discardableResult
  static func update(_ path: String, _ change: (Value?) throws -> Value) throws -> Value {
    lock.lock()
    defer { lock.unlock() }
    let doc = try change(try read(path))
    try AtomicFile.write(doc.json(indent: 2) + "\n", to: path, mode: 0o600)
    return doc
  }

  /// Now, as ISO 8601 text (UTC) and as seconds since 1970.
  static func stamp() -> (String, Double) {
    let now = Date()
    return (iso(now), (now.timeIntervalSince1970 * 1000).rounded() / 1000)
  }

  /// ISO 8601 text of a time.
  static func iso(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    return f.string(from: d)
  }

  /// The steps of a run, by position.
  static func steps(_ doc: Value) -> [Value] { doc["steps"]?.arrayValue ?? [] }

  /// A new run, numbered after `old`, which is summarised under `previous`.
  static func newRun(_ old: Value?, dc: String, db: String, flow: String) -> Value {
    let (at, epoch) = stamp()
    var previous = old?["previous"]?.arrayValue ?? []
    if let old {
      previous.append(
        .object(
          ["run", "state", "started_at", "finished_at", "note"].map { ($0, old[$0] ?? .null) }))
    }
    return .object([
      ("flow", .string(flow)), ("dc", .string(dc)), ("db", .string(db)),
      ("run", .int((old?["run"]?.intValue ?? 0) + 1)), ("state", "in_progress"),
      ("started_at", .string(at)), ("started_epoch", .double(epoch)), ("finished_at", .null),
      ("finished_epoch", .null),
      ("note", .null), ("data", .object([])), ("steps", .array([])),
      ("previous", .array(Array(previous.suffix(keptRuns)))),
    ])
  }

  /// Records that `step` starts (or starts again after an interruption), with `data` merged
  /// into what the step already recorded; starts a new run when none is in progress. The
  /// first begin takes the flow's lock for this pair (held until the process ends, also by
  /// SIGKILL), so a second belt running the same flow on the same pair is refused.
  static func begin(
    _ path: String, dc: String, db: String, flow: String, step: String, data: Value?,
    runData: Value?
  )
    throws -> Value
  {
    try FlowLock.acquire(path + ".lock", what: "the \(flow) of \(dc)/\(db)")
    return try update(path) { old in
      // (Value is ExpressibleByNilLiteral: spell the optional out.)
      var doc: Value
      if let old, old["state"] == "in_progress" {
        doc = old
      } else {
        doc = newRun(old, dc: dc, db: db, flow: flow)
      }
      if let runData { doc = doc.setting("data", merged(doc["data"], runData)) }
      let (at, epoch) = stamp()
      var list = steps(doc)
      let i = list.firstIndex { $0["name"]?.stringValue == step }
      var s =
        i.map { list[$0] }
        ?? .object([
          ("name", .string(step)), ("status", "started"), ("started_at", .string(at)),
          ("started_epoch", .double(epoch)),
          ("ended_at", .null), ("ended_epoch", .null), ("attempts", 0), ("error", .null),
          ("data", .object([])),
        ])
      s = s.setting("status", "started").setting(
        "attempts", .int((s["attempts"]?.intValue ?? 0) + 1)
      )
      .setting("last_started_at", .string(at)).setting("ended_at", .null).setting(
        "ended_epoch", .null)
      if let data { s = s.setting("data", merged(s["data"], data)) }
      if let i { list[i] = s } else { list.append(s) }
      return doc.setting("steps", .array(list))
    }
  }

  /// Records the end of `step` (`done` or `failed`, checked by the journal_end spec) in the run
  /// in progress.
  static func end(_ path: String, step: String, status: String, data: Value?, error: String?) throws
    -> Value
  {
    return try update(path) { old in
      guard let doc = old, doc["state"] == "in_progress" else {
        throw BeltError(.preconditionFailed, "\(path): no run in progress (begin the step first)")
      }
      var list = steps(doc)
      guard let i = list.firstIndex(where: { $0["name"]?.stringValue == step }) else {
        throw BeltError(
          .preconditionFailed, "\(path): step \(Value.jsonQuote(step)) was never begun")
      }
      let (at, epoch) = stamp()
      var s = list[i].setting("status", .string(status)).setting("ended_at", .string(at)).setting(
        "ended_epoch", .double(epoch)
      )
      .setting("error", .from(error))
      if let started = s["started_epoch"]?.doubleValue {
        s = s.setting("duration_s", .double(((epoch - started) * 1000).rounded() / 1000))
      }
      if let data { s = s.setting("data", merged(s["data"], data)) }
      list[i] = s
      return doc.setting("steps", .array(list))
    }
  }

  /// Ends the run in progress: `done`, `compensated` (the runbook undid its fence) or
  /// `rolled_back`; a finished or compensated run can still become `rolled_back`. Otherwise a
  /// run already ended keeps its state (closing twice is harmless). The journal_close spec
  /// checks `state`.
  static func close(_ path: String, state: String, note: String?, runData: Value? = nil) throws
    -> Value
  {
    return try update(path) { old in
      guard let doc = old else {
        throw BeltError(.preconditionFailed, "\(path): no journal to close")
      }
      let (at, epoch) = stamp()
      if state == "rolled_back", doc["state"] == "done" || doc["state"] == "compensated" {
        // A finished (or compensated) cutover that rollback.lua then undid.
        return doc.setting("state", "rolled_back").setting("rolled_back_at", .string(at)).setting(
          "note", .from(note))
      }
      guard doc["state"] == "in_progress" else { return doc }
      let data = runData.map { merged(doc["data"], $0) } ?? doc["data"] ?? .object([])
      return doc.setting("data", data).setting("state", .string(state)).setting(
        "finished_at", .string(at)
      ).setting("finished_epoch", .double(epoch))
        .setting("note", .from(note))
    }
  }

  /// The record Lua sees: the document plus `state = "none"` when absent, the current step,
  /// a `step_status` map and the file.
  static func record(_ doc: Value?, path: String, flow: String) -> Value {
    guard let doc else {
      return .object([
        ("flow", .string(flow)), ("state", "none"), ("steps", .array([])),
        ("step_status", .object([])), ("file", .string(path)),
      ])
    }
    let list = steps(doc)
    let open =
      list.last { $0["status"] == "started" } ?? (doc["state"] == "in_progress" ? list.last : nil)
    var fields: [(String, Value)] = []
    // dc and db are the record's own fields (Runner adds them).
    if case .object(let o) = doc {
      fields = o.filter { !["previous", "dc", "db"].contains($0.key) }.map { ($0.key, $0.value) }
    }
    fields += [
      ("current_step", open?["name"] ?? .null), ("current_step_status", open?["status"] ?? .null),
      ("current_step_since", open?["last_started_at"] ?? .null),
      (
        "step_status",
        .object(list.compactMap { s in s["name"]?.stringValue.map { ($0, s["status"] ?? .null) } })
      ),
      ("runs_before", .int(doc["previous"]?.arrayValue?.count ?? 0)), ("file", .string(path)),
    ]
    return .object(fields)
  }

  /// Shallow merge of two objects (`b` wins); `b` alone when `a` is not an object.
  static func merged(_ a: Value?, _ b: Value) -> Value {
    guard case .object(var members) = a ?? .object([]), case .object(let add) = b else { return b }
    members.merge(add) { _, new in new }
    return .object(members)
  }

  /// The step that is running for a pair: a `started` step of a run in progress, in any
  /// flow's journal (the most recently started one). Operations add their facts to it.
  public struct OpenStep: Sendable {
    /// The journal file.
    var path: String
    public var flow: String
    public var step: String

    /// What the operations recorded in this step under `key` (`data[key]`).
    func noted(_ key: String) -> Value? {
      guard let doc = try? Journal.read(path), doc["state"] == "in_progress",
        let s = Journal.steps(doc).first(where: { $0["name"]?.stringValue == step })
      else { return nil }
      return s["data"]?[key]
    }

    /// Sets `data[key][sub...]` of this step, durably, before the caller acts on it.
    func note(_ key: String, _ sub: [String] = [], _ value: Value) throws {
      try Journal.update(path) { old in
        guard let doc = old else { throw BeltError(.ioError, "\(path) disappeared") }
        var list = Journal.steps(doc)
        guard let i = list.firstIndex(where: { $0["name"]?.stringValue == step }) else {
          return doc
        }
        let data = list[i]["data"] ?? .object([])
        list[i] = list[i].setting("data", data.setting(path: [key] + sub, value))
        return doc.setting("steps", .array(list))
      }
    }
  }

  /// The open step of the pair, if a runbook has one (see ``OpenStep``).
  static func openStep(_ store: ConfigStore, dc: String, db: String) -> OpenStep? {
    let dir = "\(store.root)/configs/\(dc)/\(db)"
    let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter {
      $0.hasSuffix(".journal.json")
    }
    var best: (Double, OpenStep)? = nil
    for f in files {
      let p = "\(dir)/\(f)"
      guard let doc = try? read(p), doc["state"] == "in_progress",
        let s = steps(doc).last(where: { $0["status"] == "started" }),
        let name = s["name"]?.stringValue
      else { continue }
      let at = s["started_epoch"]?.doubleValue ?? 0
      let flow = doc["flow"]?.stringValue ?? String(f.dropLast(".journal.json".count))
      if best == nil || at > (best?.0 ?? 0) {
        best = (at, OpenStep(path: p, flow: flow, step: name))
      }
    }
    return best?.1
  }
}

extension Value {
  /// A copy with the nested object field at `path` set (objects created on the way).
  func setting(path: [String], _ value: Value) -> Value {
    guard let first = path.first else { return value }
    let base: Value
    if case .object = self { base = self } else { base = .object([]) }
    let child = base[first] ?? .object([])
    return base.setting(first, child.setting(path: Array(path.dropFirst()), value))
  }

  var doubleValue: Double? {
    switch self {
    case .int(let i): return Double(i)
    case .double(let d): return d
    default: return nil
    }
  }
}

/// One process at a time runs a flow on a pair: an exclusive `flock` on `<journal>.lock`,
/// taken at the first step and released when the process ends (the kernel drops it on SIGKILL).
enum FlowLock {
  nonisolated(unsafe) private static var held: [String: Int32] = [:]
  private static let lock = NSLock()

  /// Takes the lock of `path` for this process (a no-op when already held).
  /// - Throws: ``BeltError`` `precondition_failed` naming the other process.
  static func acquire(_ path: String, what: String) throws {
    lock.lock()
    defer { lock.unlock() }
    if held[path] != nil { return }
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw BeltError(.ioError, "\(path): cannot be opened") }
    if flock(fd, LOCK_EX | LOCK_NB) != 0 {
      var buf = [UInt8](repeating: 0, count: 32)
      let n = read(fd, &buf, 31)
      close(fd)
      let pid =
        n > 0
        ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(
          in: .whitespacesAndNewlines) : "?"
      throw BeltError(
        .preconditionFailed,
        "another belt process (pid \(pid)) is running \(what) right now; wait for it to end or stop it, then run the command again"
      )
    }
    _ = ftruncate(fd, 0)
    let me = Array("\(getpid())\n".utf8)
    _ = me.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    held[path] = fd
  }
}
