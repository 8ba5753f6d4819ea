import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a program: for a runbook (`belt.exec`: the switches belt cannot do itself, such as DNS,
/// a service mesh, a deploy tool, a pager), pg_dump, and a remote config's resolver command.
///
/// - No shell: `argv[0]` is found in the child's PATH and started with `posix_spawn`, so
///   nothing in the arguments is ever interpreted.
/// - The child gets a small environment (PATH, HOME, LANG, LC_ALL, TZ, USER) plus what the
///   caller passes: belt's own environment may hold PGPASSWORD or BELT_* settings, and secrets
///   must never reach a child implicitly.
/// - It runs in its own process group with default signal dispositions and an empty signal mask
///   (belt may have been started with signals blocked); a timeout or Ctrl-C kills the whole
///   group (SIGTERM, then SIGKILL after a grace period).
/// - stdout and stderr are read concurrently (a child filling one pipe never deadlocks) and
///   kept up to `maxOutput` bytes each.
public struct ExternalCommand {
  public var argv: [String]
  public var environment: [String: String] = [:]
  public var stdin: String? = nil
  public var timeout: Double = 60
  public var maxOutput = 1 << 20
  /// The child starts from belt's whole environment instead of the small set below: for a
  /// secret-store resolver (vault, aws) that reads its own variables from the operator's shell.
  public var inheritsEnvironment = false

  /// The variables a child inherits from belt; everything else must be passed explicitly.
  static let inherited = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER"]

  public struct Outcome {
    public var status: Int32?
    public var signal: Int32?
    public var stdout: String
    public var stderr: String
    public var seconds: Double
    public var timedOut: Bool
    public var interrupted: Bool
    /// stdout was not valid UTF-8 (`stdout` then holds replacement characters).
    public var stdoutInvalidUTF8: Bool
    /// stdout reached `maxOutput` bytes and the rest was dropped.
    public var stdoutTruncated: Bool
    public var ok: Bool { status == 0 && !timedOut && !interrupted }
  }

  public init(argv: [String]) { self.argv = argv }

  func childEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    let parent = ProcessInfo.processInfo.environment
    if inheritsEnvironment { env = parent }
    for k in Self.inherited { if let v = parent[k] { env[k] = v } }
    if env["PATH"] == nil { env["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
    for (k, v) in environment { env[k] = v }
    return env
  }

  /// The program's path: as given when it contains a slash, else the first executable of that
  /// name in the child's PATH.
  func resolve(_ env: [String: String]) throws -> String {
    guard let name = argv.first, !name.isEmpty else {
      throw BeltError(.badArgument, "belt.exec: argv is empty")
    }
    if name.contains("/") {
      guard FileManager.default.isExecutableFile(atPath: name) else {
        throw BeltError(.notFound, "belt.exec: \(name) does not exist or is not executable")
      }
      return name
    }
    let path = env["PATH"] ?? ""
    for dir in path.split(separator: ":") where !dir.isEmpty {
      let candidate = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw BeltError(.notFound, "belt.exec: \(name) not found in PATH (\(path))")
  }

  /// Runs the program to its end, its timeout, or until `stop()` says so (polled every 50 ms).
  public func run(stop: () -> Bool = { false }) throws -> Outcome {
    let env = childEnvironment()
    let path = try resolve(env)
    var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], inPipe: [Int32] = [0, 0]
    guard pipe(&outPipe) == 0, pipe(&errPipe) == 0, pipe(&inPipe) == 0 else {
      throw BeltError(.ioError, "belt.exec: pipe() failed: \(String(cString: strerror(errno)))")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    Self.closeTheRest(&actions)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    Self.cleanSignals(&attr)
    posix_spawnattr_setpgroup(&attr, 0)
    posix_spawnattr_setflags(
      &attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = env.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for p in cArgs { free(p) }
      for p in cEnv { free(p) }
    }
    let t0 = Date()
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attr, cArgs, cEnv)
    close(inPipe[0])
    close(outPipe[1])
    close(errPipe[1])
    guard rc == 0 else {
      close(inPipe[1])
      close(outPipe[0])
      close(errPipe[0])
      throw BeltError(.ioError, "belt.exec: cannot start \(path): \(String(cString: strerror(rc)))")
    }
    // The input is small (a token, a record); written whole before reading, then closed.
    if let stdin {
      var bytes = Array(stdin.utf8)[...]
      signal(SIGPIPE, SIG_IGN)
      while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(inPipe[1], $0.baseAddress, $0.count) }
        if n <= 0 { break }
        bytes = bytes.dropFirst(n)
      }
    }
    close(inPipe[1])

    var out = [UInt8](), err = [UInt8]()
    var open: [Int32] = [outPipe[0], errPipe[0]]
    var timedOut = false, interrupted = false, killedAt: Date? = nil
    var buf = [UInt8](repeating: 0, count: 65536)
    var status: Int32 = 0
    var exited = false
    while true {
      if !exited {
        let w = waitpid(pid, &status, WNOHANG)
        if w == pid { exited = true }
      }
      if exited && open.isEmpty { break }
      if killedAt == nil {
        if Date().timeIntervalSince(t0) > timeout {
          timedOut = true
        } else if stop() {
          interrupted = true
        }
        if timedOut || interrupted {
          kill(-pid, SIGTERM)
          killedAt = Date()
        }
      } else if let k = killedAt, Date().timeIntervalSince(k) > 2 {
        kill(-pid, SIGKILL)
      }
      if open.isEmpty {
        usleep(10_000)
        continue
      }
      var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
      _ = poll(&fds, nfds_t(fds.count), 50)
      for f in fds where f.revents != 0 {
        let n = buf.withUnsafeMutableBytes { read(f.fd, $0.baseAddress, $0.count) }
        if n > 0 {
          if f.fd == outPipe[0] {
            if out.count < maxOutput { out += buf[0..<min(n, maxOutput - out.count)] }
          } else if err.count < maxOutput {
            err += buf[0..<min(n, maxOutput - err.count)]
          }
        } else {
          close(f.fd)
          open.removeAll { $0 == f.fd }
        }
      }
    }
    // A descendant that kept the group alive is not waited for, but it does not outlive a kill.
    if killedAt != nil { kill(-pid, SIGKILL) }
    let seconds = Date().timeIntervalSince(t0)
    let exitedNormally = (status & 0x7f) == 0
    let text = String(validating: out, as: UTF8.self)
    return Outcome(
      status: exitedNormally ? (status >> 8) & 0xff : nil,
      signal: exitedNormally ? nil : status & 0x7f,
      stdout: text ?? String(decoding: out, as: UTF8.self),
      stderr: String(decoding: err, as: UTF8.self),
      seconds: seconds, timedOut: timedOut, interrupted: interrupted,
      stdoutInvalidUTF8: text == nil, stdoutTruncated: out.count >= maxOutput)
  }

  /// Closes every descriptor from 3 up in the child.
  private static func closeTheRest(_ actions: inout posix_spawn_file_actions_t) {
    // Nothing else of belt's (server sockets, the journal's lock) reaches the child. glibc has
    // this since 2.34, but its header only declares it with _GNU_SOURCE, which Swift's Glibc
    // module does not define: looked up at run time.
    if let sym = dlsym(
      UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
    {
      typealias CloseFrom =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
      _ = unsafeBitCast(sym, to: CloseFrom.self)(&actions, 3)
    }
  }

  /// Default dispositions and an empty mask in the child.
  private static func cleanSignals(_ attr: inout posix_spawnattr_t) {
    var none = sigset_t()
    sigemptyset(&none)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for s in [SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigmask(&attr, &none)
    posix_spawnattr_setsigdefault(&attr, &defaults)
  }

  /// glibc's POSIX_SPAWN_SETSID (declared only with _GNU_SOURCE).
  private static let spawnSetsid: Int32 = 0x80

  /// Starts the program detached and returns its pid without waiting: a session of its own
  /// (`setsid`: no controlling terminal, its own process group, so neither a SIGKILL of belt
  /// nor the terminal closing reaches it), stdin from /dev/null, stdout and stderr appended to
  /// `log`, no other descriptor of belt's. For the pgbouncer watchdog, a process that must
  /// outlive belt.
  public func detach(log: String) throws -> pid_t {
    let env = childEnvironment()
    let path = try resolve(env)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    Self.closeTheRest(&actions)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    Self.cleanSignals(&attr)
    posix_spawnattr_setflags(
      &attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | Self.spawnSetsid))
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = env.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for p in cArgs { free(p) }
      for p in cEnv { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, &attr, cArgs, cEnv)
    guard rc == 0 else {
      throw BeltError(.ioError, "cannot start \(path): \(String(cString: strerror(rc)))")
    }
    return pid
  }
}
