import Foundation
import Logging

/// sync-large-objects and the large-object half of validate-data. Logical replication carries
/// no large object (neither engine), so belt copies them itself, as a delta: each side's
/// inventory is one query (OID, owner, ACL, size and an md5 of the content computed on the
/// server), and only what differs moves. `migrate.lua` copies them all before the window; the
/// cutover's `sync` copies what changed since (objects are mostly created and unlinked, rarely
/// rewritten), so the window pays for the delta only.
///
/// An object that differs in any way (content, owner, ACL) is unlinked on dst and created again
/// with the same OID (`lo_create(oid)`); its content streams from src's `lo_get` in chunks of
/// ``chunk`` bytes through `COPY` into a temporary table on dst and is written with `lo_put`, so
/// neither belt nor a server holds a big object whole. An owner or grantee role that dst lacks is
/// left out (the object stays owned by dst's root user) and named in the record.
enum LargeObjects {
  /// Bytes per content chunk: a row of the COPY, an `lo_get`/`lo_put` call, a hashed slice.
  static let chunk = 1 << 20
  /// Objects created on dst per transaction, and their content bytes.
  static let batchObjects = 20_000
  static let batchBytes = 64 << 20

  /// A grant of an object's ACL (`aclexplode`; the default ACL when it has none).
  struct Grant: Hashable, Comparable, Sendable {
    /// nil: PUBLIC.
    var grantee: String?
    /// SELECT or UPDATE.
    var privilege: String
    var grantable: Bool

    static func < (a: Grant, b: Grant) -> Bool {
      (a.grantee ?? "", a.privilege, a.grantable ? 1 : 0)
        < (b.grantee ?? "", b.privilege, b.grantable ? 1 : 0)
    }

    /// `GRANT … ON LARGE OBJECT oid TO …`.
    func sql(_ oid: UInt32) -> String {
      let to = grantee.map(PGConnection.quoteIdent) ?? "PUBLIC"
      return "GRANT \(privilege) ON LARGE OBJECT \(oid) TO \(to)"
        + (grantable ? " WITH GRANT OPTION" : "")
    }
  }

  /// One large object as one server has it.
  struct Entry: Equatable, Sendable {
    var owner: String
    /// In the order of the object's ACL (granted in that order, dst prints the same ACL).
    var grants: [Grant]
    /// The object has an ACL of its own (not the default).
    var explicitACL: Bool
    var size: Int
    /// md5 of the content (≤ ``chunk`` bytes), else md5 of the chunks' md5s.
    var hash: String

    /// Equal for what dst must match: `explicitACL` and the order of the grants aside (a
    /// default ACL written out equals it).
    func matches(_ o: Entry) -> Bool {
      owner == o.owner && grants.sorted() == o.grants.sorted() && size == o.size && hash == o.hash
    }
  }

  /// The inventory of one server, hashed there: the metadata in one query, then sizes and
  /// hashes from pg_largeobject's pages when the root user may read it (a superuser: 0.35 s for
  /// 100,000 small objects, where the lo_* functions take 4 s), and through `lo_get` for the
  /// objects that query leaves out (bigger than a chunk, with holes, empty) or for every object
  /// otherwise.
  static func inventory(_ c: PGConnection) throws -> [UInt32: Entry] {
    // One snapshot for the three queries: an object unlinked meanwhile is in none of them.
    try c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    defer { _ = try? c.exec("ROLLBACK") }
    let meta = try c.query(
      """
      SELECT m.oid::text AS oid, pg_get_userbyid(m.lomowner) AS owner,
             CASE WHEN m.lomacl IS NOT NULL THEN
               (SELECT json_agg(json_build_array(CASE WHEN a.grantee = 0 THEN NULL
                                                      ELSE pg_get_userbyid(a.grantee) END,
                                                 a.privilege_type, a.is_grantable) ORDER BY a.n)
                  FROM aclexplode(m.lomacl)
                       WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, n)) END AS grants
        FROM pg_largeobject_metadata m
      """)
    var content = try pageHashes(c)
    let rest = meta.rows.compactMap { UInt32($0.string("oid")) }.filter { content[$0] == nil }
    if !rest.isEmpty { content.merge(try functionHashes(c, rest)) { a, _ in a } }
    var out: [UInt32: Entry] = [:]
    out.reserveCapacity(meta.rows.count)
    for r in meta.rows {
      guard let oid = UInt32(r.string("oid")), let (size, hash) = content[oid] else { continue }
      let owner = r.string("owner")
      // No ACL of its own: the default, the owner's SELECT and UPDATE.
      let grants =
        try r["grants"].map { json in
          (try JSONParser.parse(json).arrayValue ?? []).map { g in
            Grant(
              grantee: g.arrayValue?[0].stringValue, privilege: g.arrayValue?[1].stringValue ?? "",
              grantable: g.arrayValue?[2].boolValue ?? false)
          }
        }
        ?? [
          Grant(grantee: owner, privilege: "SELECT", grantable: false),
          Grant(grantee: owner, privilege: "UPDATE", grantable: false),
        ]
      out[oid] = Entry(
        owner: owner, grants: grants, explicitACL: r["grants"] != nil, size: size, hash: hash)
    }
    return out
  }

  /// Size and hash of every object of at most ``chunk`` bytes without holes, from its pages
  /// (one pass over pg_largeobject's index), when the root user may read pg_largeobject; else
  /// none. A bigger object (at most its first chunk is aggregated) is left to
  /// ``functionHashes(_:_:)``.
  static func pageHashes(_ c: PGConnection) throws -> [UInt32: (Int, String)] {
    guard try c.query("SELECT has_table_privilege('pg_largeobject', 'SELECT')").scalar == "t",
      let page = Int(try c.query("SELECT current_setting('block_size')").scalar ?? "").map({
        $0 / 4
      })
    else { return [:] }
    let rows = try c.query(
      """
      SELECT loid::text AS oid, sum(octet_length(data)) AS size,
             md5(string_agg(data, ''::bytea ORDER BY pageno) FILTER (WHERE pageno < $1::int)) AS hash
        FROM pg_largeobject GROUP BY loid
      HAVING max(pageno) < $1::int AND count(*) = max(pageno) + 1
         AND (count(*) FILTER (WHERE octet_length(data) < $2::int) = 0
              OR (count(*) FILTER (WHERE octet_length(data) < $2::int) = 1
                  AND max(pageno) FILTER (WHERE octet_length(data) < $2::int) = max(pageno)))
      """, [String(chunk / page), String(page)])
    var out: [UInt32: (Int, String)] = [:]
    out.reserveCapacity(rows.rows.count)
    for r in rows.rows {
      if let oid = UInt32(r.string("oid")) { out[oid] = (r.int("size") ?? 0, r.string("hash")) }
    }
    return out
  }

  /// Size and hash of `oids` through the lo_* functions: the same hash as ``pageHashes(_:)``
  /// (md5 of the content up to ``chunk`` bytes, else md5 of the md5s of its chunks).
  static func functionHashes(_ c: PGConnection, _ oids: [UInt32]) throws -> [UInt32: (Int, String)]
  {
    let rows = try c.query(
      """
      SELECT m.oid::text AS oid, s.size,
             CASE WHEN s.size <= $1::bigint THEN md5(lo_get(m.oid))
                  ELSE (SELECT md5(string_agg(md5(lo_get(m.oid, o, $1::int)), '' ORDER BY o))
                          FROM generate_series(0::bigint, s.size - 1, $1::bigint) o) END AS hash
        FROM pg_largeobject_metadata m
       CROSS JOIN LATERAL (SELECT lo_lseek64(f.fd, 0, 2) AS size, lo_close(f.fd)
                             FROM (SELECT lo_open(m.oid, 262144) AS fd) f) s
       WHERE m.oid = ANY($2::oid[])
      """, [String(chunk), oidArray(oids)])
    var out: [UInt32: (Int, String)] = [:]
    for r in rows.rows {
      if let oid = UInt32(r.string("oid")) { out[oid] = (r.int("size") ?? 0, r.string("hash")) }
    }
    return out
  }

  /// What dst should hold for src's `e`: the owner and grantees dst lacks are left out (the
  /// owner becomes `creator`, dst's root user), and named in `missing`.
  static func expected(_ e: Entry, roles: Set<String>, creator: String, missing: inout Set<String>)
    -> Entry
  {
    var x = e
    if !roles.contains(e.owner) {
      missing.insert(e.owner)
      x.owner = creator
    }
    x.grants = e.grants.compactMap { g in
      guard let who = g.grantee else { return g }
      if who == e.owner {
        return Grant(grantee: x.owner, privilege: g.privilege, grantable: g.grantable)
      }
      if roles.contains(who) { return g }
      missing.insert(who)
      return nil
    }
    return x
  }

  /// Both sides compared.
  struct Comparison {
    var src: [UInt32: Entry]
    var dst: [UInt32: Entry]
    /// src's objects as dst should hold them.
    var want: [UInt32: Entry]
    /// Roles src's objects name that dst lacks.
    var missingRoles: [String]
    /// dst's root user, who creates the objects there.
    var creator: String
    /// On src only, or different: to (re)create.
    var copy: [UInt32]
    /// On both sides but different (unlinked first).
    var replace: [UInt32]
    /// On dst only.
    var extra: [UInt32]

    /// The first differing OID and how it differs, or nil when the two sides are equal.
    var firstDifference: String? {
      guard let oid = (copy + extra).min() else { return nil }
      guard let w = want[oid] else { return "OID \(oid) is on dst only" }
      guard let d = dst[oid] else { return "OID \(oid) is missing on dst" }
      if w.size != d.size || w.hash != d.hash {
        return
          "OID \(oid) content differs (src \(w.size) bytes md5 \(w.hash), dst \(d.size) bytes md5 \(d.hash))"
      }
      if w.owner != d.owner { return "OID \(oid) owner differs (src \(w.owner), dst \(d.owner))" }
      return "OID \(oid) privileges differ (src \(describe(w.grants)), dst \(describe(d.grants)))"
    }
  }

  static func describe(_ grants: [Grant]) -> String {
    grants.map { "\($0.grantee ?? "PUBLIC")=\($0.privilege)\($0.grantable ? "*" : "")" }
      .joined(separator: ",")
  }

  /// Reads both inventories (at once, each on its own connection) and dst's roles.
  static func compare(_ ctx: PairContext) throws -> Comparison {
    let connector = Connector(ctx)
    let sides = Runner.parallelMap(Side.allCases, width: 2) {
      side -> Result<([UInt32: Entry], [String]), BeltError> in
      do {
        let c = try connector.open(side, .root, noTimeout: true)
        defer { c.close() }
        // dst: its root user (who creates the objects there) first, then every role.
        let roles =
          side == .dst
          ? [try c.query("SELECT current_user").scalar ?? ""]
            + (try c.query("SELECT rolname FROM pg_roles").values.compactMap { $0[0] }) : []
        return .success((try inventory(c), roles))
      } catch { return .failure(BeltError.wrap(error)) }
    }
    let (src, _) = try sides[0].get()
    let (dst, dstRoles) = try sides[1].get()
    let creator = dstRoles.first ?? ""
    let roles = Set(dstRoles)
    var missing = Set<String>()
    let want = src.mapValues { expected($0, roles: roles, creator: creator, missing: &missing) }
    var copy: [UInt32] = []
    var replace: [UInt32] = []
    for (oid, w) in want {
      guard let d = dst[oid] else {
        copy.append(oid)
        continue
      }
      if !w.matches(d) {
        copy.append(oid)
        replace.append(oid)
      }
    }
    let extra = dst.keys.filter { want[$0] == nil }
    return Comparison(
      src: src, dst: dst, want: want, missingRoles: missing.sorted(), creator: creator,
      copy: copy.sorted(),
      replace: replace.sorted(), extra: extra.sorted())
  }

  // MARK: - sync-large-objects

  /// sync-large-objects: record `src_objects`, `dst_objects`, `created`, `replaced`,
  /// `unlinked`, `bytes`, `missing_roles`, `compare_ms`, `copy_ms`, `message`.
  static func sync(_ ctx: PairContext) throws -> Value {
    let start = Date()
    let cmp = try compare(ctx)
    let compareMs = Runner.ms(since: start)
    if !cmp.missingRoles.isEmpty {
      ctx.logger.warning(
        "large objects: role(s) \(Fmt.quoted(cmp.missingRoles)) do not exist on dst: their objects stay owned by dst's root user and their grants are left out"
      )
    }
    let t0 = Date()
    let dst = try ctx.connect(.dst, .root, noTimeout: true)
    let src = try ctx.connect(.src, .root, noTimeout: true)
    try unlink(cmp.extra, on: dst)
    var bytes = 0
    for batch in batches(cmp.copy, sizes: cmp.src) {
      bytes += try copy(batch, cmp: cmp, from: src, to: dst)
    }
    let copyMs = Runner.ms(since: t0)
    let created = cmp.copy.count - cmp.replace.count
    let message =
      cmp.copy.isEmpty && cmp.extra.isEmpty
      ? "\(cmp.src.count) large object(s) already equal on dst (compared in \(Fmt.duration(ms: compareMs)))"
      : "\(created) large object(s) created, \(cmp.replace.count) replaced, \(cmp.extra.count) unlinked on dst "
        + "(\(Fmt.bytes(bytes)); compared in \(Fmt.duration(ms: compareMs)), copied in \(Fmt.duration(ms: copyMs)))"
    ctx.logger.info("sync-large-objects: \(message)")
    return .object([
      ("src_objects", .int(cmp.src.count)), ("dst_objects", .int(cmp.dst.count)),
      ("created", .int(created)), ("replaced", .int(cmp.replace.count)),
      ("unlinked", .int(cmp.extra.count)), ("bytes", .int(bytes)),
      ("missing_roles", .from(cmp.missingRoles)), ("compare_ms", .int(compareMs)),
      ("copy_ms", .int(copyMs)), ("message", .string(message)), ("ok", true),
    ])
  }

  /// OIDs cut into batches of at most ``batchObjects`` objects and about ``batchBytes`` bytes.
  static func batches(_ oids: [UInt32], sizes: [UInt32: Entry]) -> [[UInt32]] {
    var out: [[UInt32]] = []
    var current: [UInt32] = []
    var bytes = 0
    for oid in oids {
      let size = sizes[oid]?.size ?? 0
      if !current.isEmpty && (current.count >= batchObjects || bytes + size > batchBytes) {
        out.append(current)
        current = []
        bytes = 0
      }
      current.append(oid)
      bytes += size
    }
    if !current.isEmpty { out.append(current) }
    return out
  }

  /// `{1,2,3}`: an oid[] literal (digits only).
  static func oidArray(_ oids: [UInt32]) -> String {
    "{" + oids.map(String.init).joined(separator: ",") + "}"
  }

  /// Unlinks `oids` on dst, 10,000 per statement.
  static func unlink(_ oids: [UInt32], on dst: PGConnection) throws {
    if oids.isEmpty { return }
    for part in stride(from: 0, to: oids.count, by: 10_000) {
      let slice = Array(oids[part..<min(part + 10_000, oids.count)])
      _ = try dst.query(
        "SELECT count(lo_unlink(o)) FROM unnest($1::oid[]) o", [oidArray(slice)])
    }
  }

  /// Creates `oids` on dst in one transaction: `lo_create` with src's OID, the content streamed
  /// from src through COPY into a temporary table and written with `lo_put`, then the owner and
  /// ACL. Returns the content bytes.
  static func copy(_ oids: [UInt32], cmp: Comparison, from src: PGConnection, to dst: PGConnection)
    throws -> Int
  {
    let sizes = oids.map { String(cmp.src[$0]?.size ?? 0) }
    try dst.transaction {
      try dst.exec(
        "CREATE TEMP TABLE IF NOT EXISTS belt_lo_chunks (loid oid, off bigint, data bytea) ON COMMIT DELETE ROWS"
      )
      // A replaced object goes in the same transaction as its new copy comes.
      let replaced = Set(cmp.replace)
      try unlink(oids.filter { replaced.contains($0) }, on: dst)
      _ = try dst.query("SELECT count(lo_create(o)) FROM unnest($1::oid[]) o", [oidArray(oids)])
      // An object unlinked on src since the inventory is skipped (the next delta unlinks it
      // on dst); one that changed is caught by the next delta or by validate-data.
      try PGConnection.pipeCopy(
        from: src,
        out: """
          COPY (SELECT m.oid, o.off, lo_get(m.oid, o.off, \(chunk))
                  FROM unnest('\(oidArray(oids))'::oid[], '{\(sizes.joined(separator: ","))}'::bigint[]) m(oid, size)
                 CROSS JOIN LATERAL generate_series(0::bigint, m.size - 1, \(chunk)) o(off)
                 WHERE EXISTS (SELECT 1 FROM pg_largeobject_metadata x WHERE x.oid = m.oid)) TO STDOUT (FORMAT binary)
          """,
        into: dst, in: "COPY belt_lo_chunks (loid, off, data) FROM STDIN (FORMAT binary)")
      _ = try dst.query(
        "SELECT count(*) FROM (SELECT lo_put(loid, off, data) FROM belt_lo_chunks ORDER BY loid, off) w"
      )
      let meta = oids.flatMap { oid in metadataSQL(oid, cmp.want[oid], creator: cmp.creator) }
      for part in stride(from: 0, to: meta.count, by: 1_000) {
        try dst.exec(meta[part..<min(part + 1_000, meta.count)].joined(separator: ";\n"))
      }
    }
    return oids.reduce(0) { $0 + (cmp.src[$1]?.size ?? 0) }
  }

  /// The statements that give a new object on dst `want`'s owner and ACL.
  static func metadataSQL(_ oid: UInt32, _ want: Entry?, creator: String) -> [String] {
    guard let want else { return [] }
    var out: [String] = []
    if want.owner != creator {
      out.append("ALTER LARGE OBJECT \(oid) OWNER TO \(PGConnection.quoteIdent(want.owner))")
    }
    if want.explicitACL {
      out.append("REVOKE ALL ON LARGE OBJECT \(oid) FROM \(PGConnection.quoteIdent(want.owner))")
      out += want.grants.map { $0.sql(oid) }
    }
    return out
  }

  // MARK: - validate-data

  /// The large objects of both sides compared (count, OID, owner, ACL, content hash); nil when
  /// neither side has any.
  static func validate(_ ctx: PairContext) throws -> Value? {
    let start = Date()
    let cmp = try compare(ctx)
    if cmp.src.isEmpty && cmp.dst.isEmpty { return nil }
    let differing = cmp.copy.count + cmp.extra.count
    let first = cmp.firstDifference
    let message =
      first.map {
        "large objects differ: \($0) (\(differing) differ; src \(cmp.src.count), dst \(cmp.dst.count))"
      } ?? "\(cmp.src.count) large object(s) match (OID, owner, privileges, content md5)"
    if let first { ctx.logger.error("validate-data: large objects: \(first)") }
    return .object([
      ("src_count", .int(cmp.src.count)), ("dst_count", .int(cmp.dst.count)),
      ("differing", .int(differing)), ("first_difference", .from(first)),
      ("missing_roles", .from(cmp.missingRoles)), ("duration_ms", .int(Runner.ms(since: start))),
      ("message", .string(message)), ("ok", .bool(first == nil)),
    ])
  }
}
