import Foundation

/// A user name and password from a config file. The password is never printed.
public struct Credentials: Equatable, Sendable, CustomStringConvertible {
  public var name: String
  public var password: String
  public init(name: String, password: String) {
    self.name = name
    self.password = password
  }
  /// The name only; the password is redacted.
  public var description: String { "\(name) (password redacted)" }
}

/// Which login a connection uses.
public enum Role: String, Sendable, CaseIterable {
  /// The superuser (or RDS master user).
  case root
  /// The owner of the migrated schema.
  case owner
  /// The replication role (the config's `pglogical_user`, pgbelt's name): the engine's
  /// subscriptions connect as it. Its raw value stays pgbelt's word in audit records.
  case replication = "pglogical"
}

/// The replication engines belt has (design.md §6), as a config names them.
public enum EngineKind: String, Sendable, CaseIterable {
  case pglogical
  case native
}

/// Which server of a pair.
public enum Side: String, Sendable, CaseIterable {
  /// The server being migrated from.
  case src
  /// The server being migrated to.
  case dst
}

/// One server of a pair (`src` or `dst` in config.json).
public struct ServerConfig: Equatable, Sendable {
  /// A host name (kept for TLS and display; connections use `ip`).
  public var host: String
  /// The address to connect to.
  public var ip: String
  public var dbname: String
  public var port: Int
  /// The superuser.
  public var root: Credentials
  /// The owner of the data.
  public var owner: Credentials
  /// The replication role (`pglogical_user` in config.json).
  public var replication: Credentials

  public func credentials(_ role: Role) -> Credentials {
    switch role {
    case .root: return root
    case .owner: return owner
    case .replication: return replication
    }
  }

  /// The libpq keyword/value connection string for a role (contains the password).
  public func conninfo(_ role: Role, connectTimeout: Int = 10, extra: [(String, String)] = [])
    -> String
  {
    let c = credentials(role)
    var pairs: [(String, String)] = []
    if ServerConfig.isNumericAddress(ip) {
      pairs.append(("hostaddr", ip))
      if !host.isEmpty, !ServerConfig.isNumericAddress(host) { pairs.append(("host", host)) }
    } else {
      pairs.append(("host", ip))
    }
    pairs += [
      ("port", String(port)), ("dbname", dbname), ("user", c.name), ("password", c.password),
      ("connect_timeout", String(connectTimeout)),
    ]
    pairs += extra
    return ConnInfo.build(pairs)
  }

  /// True when `s` is an IPv4 or IPv6 literal.
  public static func isNumericAddress(_ s: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
  }
}

/// libpq keyword/value connection strings.
public enum ConnInfo {
  /// Quotes one value: single quotes, with `\` and `'` escaped by a backslash.
  public static func quote(_ value: String) -> String {
    var out = "'"
    for ch in value {
      if ch == "\\" || ch == "'" { out.append("\\") }
      out.append(ch)
    }
    return out + "'"
  }

  /// Builds `k1='v1' k2='v2'`.
  public static func build(_ pairs: [(String, String)]) -> String {
    pairs.map { "\($0.0)=\(quote($0.1))" }.joined(separator: " ")
  }
}

/// One migration pair: `configs/<dc>/<db>/config.json`, compatible with pgbelt.
public struct MigrationConfig: Equatable, Sendable {
  /// The file this came from.
  public var path: String
  /// The whole file as parsed, so saving keeps unknown keys and their order.
  public var raw: Value
  /// The pair's name.
  public var db: String
  /// The datacenter.
  public var dc: String
  /// The source server, if configured.
  public var src: ServerConfig?
  /// The destination server, if configured.
  public var dst: ServerConfig?
  /// A subset of tables to migrate (bare names); nil = all.
  public var tables: [String]?
  /// A subset of sequences; nil = all.
  public var sequences: [String]?
  /// The one schema that is migrated.
  public var schemaName: String
  /// Users never revoked or counted.
  public var excludeUsers: [String]
  /// LIKE patterns of users never revoked or counted.
  public var excludePatterns: [String]
  /// The pgbouncer in front of src, when the config has one (cutover through a pause).
  public var pgbouncer: PgBouncerConfig? = nil
  /// The replication engine (`"engine"`; pgbelt's configs have none: pglogical).
  public var engine: EngineKind = .pglogical

  /// The server of a side, or a precondition error naming the file.
  public func server(_ side: Side) throws -> ServerConfig {
    if let s = side == .src ? src : dst { return s }
    throw BeltError(
      .configInvalid, "\(path): \"\(side.rawValue)\" is null, but this command needs it", dc: dc,
      db: db)
  }

  /// The same pair with src and dst swapped (for copying back during a rollback).
  public func reversed() -> MigrationConfig {
    var c = self
    c.src = dst
    c.dst = src
    return c
  }

  /// The configured table subset, or nil when every table is migrated (null or []).
  public var tableSubset: [String]? {
    guard let t = tables, !t.isEmpty else { return nil }
    return t
  }

  /// The configured sequence subset, or nil for all.
  public var sequenceSubset: [String]? {
    guard let s = sequences, !s.isEmpty else { return nil }
    return s
  }
}

/// `"pgbouncer": {"host", "port", "admin_user": {"name", "pw"}, "database", "databases_file"}`:
/// the pgbouncer the application connects through, and the name it uses there.
public struct PgBouncerConfig: Equatable, Sendable {
  public var host: String
  public var port: Int
  /// A user listed in pgbouncer's admin_users.
  public var admin: Credentials
  /// The database name clients use in pgbouncer.
  public var database: String
  /// The file (included from pgbouncer.ini) whose `[databases]` line for `database` belt
  /// rewrites; nil when a hook does the switch.
  public var databasesFile: String?
}
