import CLua
import CLuaShim
import Foundation
import Logging

/// A Lua-callable primitive implemented in Swift. The body reads its arguments from the call,
/// pushes its results and returns how many; it throws instead of raising.
public struct LuaFunctionSpec {
  public init(name: String, body: @escaping (LuaCall) throws -> Int32) {
    self.name = name
    self.body = body
  }
  /// Name in `belt._core` (what it does for scripts is in ``LuaDocs``).
  public var name: String
  public var body: (LuaCall) throws -> Int32
}

/// Where `print` and results go.
public final class OutputSink {
  /// Writes text to the user's output.
  public var write: (String) -> Void
  public init(write: @escaping (String) -> Void) { self.write = write }
  /// A sink that writes to stdout (or stderr).
  public static func standard(stderr useStderr: Bool = false) -> OutputSink {
    OutputSink { s in
      FileHandle(fileDescriptor: useStderr ? 2 : 1).write(Data(s.utf8))
    }
  }
}

/// The one function Lua calls into Swift through `belt_trampoline`. Never raises.
let beltDispatch: @convention(c) (OpaquePointer?) -> Int32 = { rawL in
  guard let L = rawL, let rtp = belt_get_runtime(L) else { return BELT_RAISE }
  let runtime = Unmanaged<LuaRuntime>.fromOpaque(rtp).takeUnretainedValue()
  let index = Int(lua_tointegerx(L, belt_upvalueindex(1), nil))
  let base = lua_gettop(L)
  guard index >= 0, index < runtime.functions.count else { return BELT_RAISE }
  let spec = runtime.functions[index]
  do {
    let n = try spec.body(LuaCall(L: L, name: "belt." + spec.name, runtime: runtime))
    if lua_gettop(L) != base + n { runtime.stackViolations += 1 }
    return n
  } catch {
    lua_settop(L, base)
    runtime.pushError(BeltError.wrap(error))
    return BELT_RAISE  // belt_trampoline raises the table once this closure has returned
  }
}

/// Owns one `lua_State` with the `belt` table. Confined to the thread that created it.
public final class LuaRuntime {
  let L: OpaquePointer
  private(set) var functions: [LuaFunctionSpec] = []
  public let env: Environment
  /// Output of `print` and `belt.log`.
  public let output: OutputSink
  /// Answers `belt.confirm` (nil = not interactive).
  public var confirmer: ((String) -> Bool)?
  /// Values of `belt.ctx` given by the CLI (json, yes, ...).
  public var flags: [String: Value] = [:]
  private var closed = false
  /// Calls whose pushed results did not match the stack (must stay 0; checked by tests).
  public internal(set) var stackViolations = 0
  /// The current stack height (0 between calls).
  public var stackTop: Int32 { lua_gettop(L) }

  /// Creates a state with the sandboxed libraries, the `belt` table and the prelude.
  /// - Throws: ``BeltError`` if the prelude fails (a bug).
  public init(
    env: Environment, output: OutputSink, flags: [String: Value] = [:],
    extraFunctions: [LuaFunctionSpec] = []
  ) throws {
    guard let L = belt_newstate() else { throw BeltError(.internal, "cannot create a Lua state") }
    self.L = L
    self.env = env
    self.output = output
    self.flags = flags
    belt_set_dispatch(beltDispatch)
    belt_set_runtime(L, Unmanaged.passUnretained(self).toOpaque())
    lua_pushcclosure(L, belt_openlibs, 0)
    guard belt_pcall(L, 0, 0, 0) == LUA_OK, belt_pcall_init_errormt(L) == LUA_OK else {
      throw BeltError(.internal, "cannot open the Lua libraries")
    }
    functions = LuaBindings.specs(for: self) + extraFunctions
    // _core table
    lua_createtable(L, 0, Int32(functions.count))
    for (i, f) in functions.enumerated() {
      pushString(f.name)
      belt_push_trampoline(L, lua_Integer(i))
      lua_rawset(L, -3)
    }
    guard belt_pcall_setglobal(L, "_belt_core") == LUA_OK else {
      throw BeltError(.internal, "cannot register belt._core")
    }
    pushValue(LuaBindings.operationSpecsValue())
    guard belt_pcall_setglobal(L, "_belt_specs") == LUA_OK else {
      throw BeltError(.internal, "cannot register the operation specs")
    }
    _ = try run(
      source: Runbooks.source(named: "_prelude.lua") ?? "", chunkName: "=prelude", args: [])
  }

  deinit { close() }

  /// Closes the state (runs `__gc` finalisers). Idempotent.
  public func close() {
    guard !closed else { return }
    closed = true
    lua_close(L)
  }

  /// Loads and runs a chunk with `args` as `...`; returns its results.
  /// - Throws: ``BeltError``: a chunk that does not compile gives `.scriptError` with no
  ///   traceback; an error raised while it runs keeps the fields of the error table, with its
  ///   traceback.
  public func run(source: String, chunkName: String, args: [Value]) throws -> [Value] {
    let top = lua_gettop(L)
    defer { lua_settop(L, top) }
    let status = source.withCString { p in
      luaL_loadbufferx(L, p, strlen(p), chunkName, "t")
    }
    if status != LUA_OK {
      throw BeltError(.scriptError, string(at: -1) ?? "syntax error")
    }
    return try call(nargs: args, top: top)
  }

  /// Calls the function on top of the stack with `args` under pcall, with Ctrl-C armed.
  func call(nargs args: [Value], top: Int32) throws -> [Value] {
    _ = lua_checkstack(L, Int32(args.count + 20))
    for a in args { pushValue(a) }
    belt_install_sigint(L)
    let rc = belt_pcall(L, Int32(args.count), LUA_MULTRET, 1)
    belt_remove_sigint()
    if rc != LUA_OK { throw raisedError(at: -1) }
    let n = lua_gettop(L) - top
    var results: [Value] = []
    for i in 0..<n { results.append(value(at: top + 1 + i)) }
    return results
  }

  /// Reads the error that a protected call left at `idx`. belt_msghandler makes it a table;
  /// only an error inside the handler itself (LUA_ERRERR) leaves a string.
  func raisedError(at idx: Int32) -> BeltError {
    let t = lua_absindex(L, idx)
    guard lua_type(L, t) == LUA_TTABLE else {
      return BeltError(.scriptError, string(at: t) ?? "error in the Lua error handler")
    }
    var message = rawField(t, "message").stringValue
    if message == nil {
      // A script's own table: its __tostring, which is Lua code, hence the pcall. Without one,
      // Lua says "table: 0x...", which tells the operator nothing: its fields do.
      if belt_pcall_tostring(L, t) == LUA_OK, let s = string(at: -1), !s.hasPrefix("table: 0x") {
        message = s
      }
      belt_pop(L, 1)
    }
    var e = BeltError(
      rawField(t, "code").stringValue.map(BeltError.Code.init(rawValue:)) ?? .scriptError,
      message ?? "error object without a message: \(fieldsWithoutTrace(t).json(indent: 0))",
      dc: rawField(t, "dc").stringValue, db: rawField(t, "db").stringValue,
      sqlstate: rawField(t, "sqlstate").stringValue,
      retryable: rawField(t, "retryable").boolValue ?? false)
    e.traceback = rawField(t, "traceback").stringValue
    e.position = rawField(t, "position").stringValue
    return e
  }

  /// The fields of the error table at `t` that the script set (the message handler adds the
  /// traceback and the position).
  private func fieldsWithoutTrace(_ t: Int32) -> Value {
    let v = value(at: t)
    guard case .object(var fields) = v else { return v }
    fields.removeValue(forKey: "traceback")
    fields.removeValue(forKey: "position")
    return .object(fields)
  }

  // MARK: - Stack helpers ('-' and 'm' API only)

  func pushString(_ s: String) {
    var s = s
    s.withUTF8 { buf in
      _ = buf.withMemoryRebound(to: CChar.self) { lua_pushlstring(L, $0.baseAddress, $0.count) }
    }
  }

  /// Reads a string (copying it, NULs preserved).
  func string(at idx: Int32) -> String? {
    guard lua_type(L, idx) == LUA_TSTRING else { return nil }
    var len = 0
    guard let p = lua_tolstring(L, idx, &len) else { return nil }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
  }

  /// Pushes a Value as Lua data (objects and arrays become tables).
  func pushValue(_ v: Value) {
    _ = lua_checkstack(L, 4)
    switch v {
    case .null: lua_pushnil(L)
    case .bool(let b): lua_pushboolean(L, b ? 1 : 0)
    case .int(let i): lua_pushinteger(L, lua_Integer(i))
    case .double(let d): lua_pushnumber(L, d)
    case .string(let s): pushString(s)
    case .array(let a):
      lua_createtable(L, Int32(a.count), 0)
      for (i, e) in a.enumerated() {
        pushValue(e)
        lua_rawseti(L, -2, lua_Integer(i + 1))
      }
    case .object(let o):
      lua_createtable(L, 0, Int32(o.count))
      for (k, e) in o where !e.isNull {
        pushString(k)
        pushValue(e)
        lua_rawset(L, -3)
      }
    }
  }

  /// Pushes a belt error table with the shared metatable.
  func pushError(_ e: BeltError) {
    pushValue(e.value)
    belt_set_errormt(L)
  }

  /// Converts the value at `idx` to a Value. Tables with keys 1...n become arrays; other tables
  /// become objects with sorted keys. Functions and userdata become their type name.
  func value(at idx: Int32, depth: Int = 0) -> Value {
    let i = lua_absindex(L, idx)
    switch lua_type(L, i) {
    case LUA_TNIL, LUA_TNONE: return .null
    case LUA_TBOOLEAN: return .bool(lua_toboolean(L, i) != 0)
    case LUA_TNUMBER:
      if lua_isinteger(L, i) != 0 { return .int(Int(lua_tointegerx(L, i, nil))) }
      return .double(lua_tonumberx(L, i, nil))
    case LUA_TSTRING: return .string(string(at: i) ?? "")
    case LUA_TTABLE:
      if depth > 50 { return .string("<table nested too deep>") }
      _ = lua_checkstack(L, 6)
      guard belt_pcall_keys(L, i) == LUA_OK else {
        belt_pop(L, 1)
        return .string("<table>")
      }
      let keysIdx = lua_gettop(L)
      let n = Int(lua_rawlen(L, keysIdx))
      var keys: [Value] = []
      for k in 0..<n {
        lua_rawgeti(L, keysIdx, lua_Integer(k + 1))
        keys.append(value(at: -1, depth: depth + 1))
        belt_pop(L, 1)
      }
      var result: Value
      let ints = keys.compactMap { k -> Int? in
        if case .int(let x) = k { return x } else { return nil }
      }
      if !keys.isEmpty, ints.count == keys.count, Set(ints) == Set(1...keys.count) {
        var items: [Value] = []
        for k in 1...keys.count {
          lua_rawgeti(L, i, lua_Integer(k))
          items.append(value(at: -1, depth: depth + 1))
          belt_pop(L, 1)
        }
        result = .array(items)
      } else if keys.isEmpty {
        result = .object([])
      } else {
        var pairs: [(String, Value)] = []
        for (kIndex, k) in keys.enumerated() {
          lua_rawgeti(L, keysIdx, lua_Integer(kIndex + 1))
          lua_rawget(L, i)
          let name: String
          switch k {
          case .string(let s): name = s
          default: name = k.display
          }
          pairs.append((name, value(at: -1, depth: depth + 1)))
          belt_pop(L, 1)
        }
        pairs.sort { $0.0 < $1.0 }
        result = .object(pairs)
      }
      belt_pop(L, 1)
      return result
    default:
      return .string("<\(String(cString: lua_typename(L, lua_type(L, i))))>")
    }
  }

  /// Reads the field `key` of the table at `idx` without metamethods.
  func rawField(_ idx: Int32, _ key: String) -> Value {
    let t = lua_absindex(L, idx)
    pushString(key)
    lua_rawget(L, t)
    defer { belt_pop(L, 1) }
    return value(at: -1)
  }
}

/// One Lua→Swift call: argument access and result pushing.
public struct LuaCall {
  let L: OpaquePointer
  /// "belt.status" — used in argument errors.
  public let name: String
  let runtime: LuaRuntime

  public var count: Int32 { lua_gettop(L) }

  func typeName(_ i: Int32) -> String { String(cString: lua_typename(L, lua_type(L, i))) }

  func argError(_ i: Int32, _ msg: String) -> BeltError {
    BeltError(.badArgument, "bad argument #\(i) to '\(name)' (\(msg))")
  }

  /// A required string argument.
  public func string(_ i: Int32) throws -> String {
    guard lua_type(L, i) == LUA_TSTRING, let s = runtime.string(at: i) else {
      throw argError(i, "string expected, got \(typeName(i))")
    }
    return s
  }

  public func optString(_ i: Int32) throws -> String? {
    if belt_isnoneornil(L, i) != 0 { return nil }
    guard lua_type(L, i) == LUA_TSTRING else {
      throw argError(i, "string or nil expected, got \(typeName(i))")
    }
    return runtime.string(at: i)
  }

  public func value(_ i: Int32) -> Value { runtime.value(at: i) }

  /// Reads the declared option keys of a table argument (nil/absent = no options), unchecked:
  /// ``Runner`` checks them against the spec.
  public func options(_ i: Int32, _ spec: [OptionSpec]) throws -> Options {
    if belt_isnoneornil(L, i) != 0 { return Options() }
    guard lua_type(L, i) == LUA_TTABLE else {
      throw argError(i, "table or nil expected, got \(typeName(i))")
    }
    var out: [String: Value] = [:]
    for o in spec {
      let v = runtime.rawField(i, o.key)
      if !v.isNull { out[o.key] = v }
    }
    return Options(out)
  }

  /// Pushes one result; returns 1.
  public func push(_ v: Value) -> Int32 {
    runtime.pushValue(v)
    return 1
  }
}
