/// An error from libpq or the server. Its description never contains a connection string.
public struct PGError: BeltErrorConvertible, CustomStringConvertible, CustomDebugStringConvertible,
  Sendable
{
  /// Where the error happened.
  public enum Kind: String, Sendable {
    /// Could not connect (network, refused, timeout).
    case connection
    /// The server rejected the login.
    case authentication
    /// A statement failed.
    case server
    /// The connection broke or the protocol failed.
    case client
  }
  public var kind: Kind
  /// Which connection, e.g. "src as root" (no secrets).
  public var label: String
  /// The server's (or libpq's) primary message.
  public var message: String
  /// SQLSTATE, for server errors.
  public var sqlState: String?
  /// DETAIL line.
  public var detail: String?
  /// HINT line.
  public var hint: String?
  /// The statement text (never bound values).
  public var query: String?

  /// One line: "src as root: message (SQLSTATE 42P01)".
  public var description: String {
    var s = "\(label): \(message)"
    if let detail, !detail.isEmpty { s += " (\(detail))" }
    if let sqlState { s += " [SQLSTATE \(sqlState)]" }
    return s
  }

  /// Adds the hint and the statement.
  public var debugDescription: String {
    var s = description
    if let hint { s += "\nHINT: \(hint)" }
    if let query { s += "\nSTATEMENT: \(query)" }
    return s
  }

  /// True when a connect got no answer from a server at all (connect timeout, refused, unknown
  /// host, no route): asking it again at once only waits out the same timeout.
  public var serverUnreachable: Bool {
    kind == .connection
      && [
        "timeout expired", "Connection refused", "could not translate host name",
        "No route to host",
        "Network is unreachable", "Connection timed out",
      ].contains { message.contains($0) }
  }

  /// True when the statement was cancelled (Ctrl-C or statement_timeout).
  public var isCancel: Bool { sqlState == "57014" }

  /// The operation-layer form.
  public var beltError: BeltError {
    let code: BeltError.Code
    switch kind {
    case .connection: code = .connectionFailed
    case .authentication: code = .authFailed
    case .client: code = .connectionFailed
    case .server: code = isCancel ? .interrupted : .sqlError
    }
    let retry =
      kind == .connection || sqlState == "40001" || sqlState == "40P01" || sqlState == "55P03"
    return BeltError(code, description, sqlstate: sqlState, retryable: retry)
  }
}
