// How the statements of a pg_dump script are split into the four pgbelt schema files (see
// SchemaScript.swift).

import Foundation

// MARK: - Partitioning

struct Partitioner {
  let statements: [SQLStatement]
  init(_ statements: [SQLStatement]) { self.statements = statements }

  func run() -> SchemaFiles {
    // 1. Foreign key targets (valid and NOT VALID FKs, inline REFERENCES).
    var refs: [(table: QualifiedName, columns: [String])] = []
    for s in statements {
      switch s.kind {
      case .other, .notValidConstraint:
        refs.append(contentsOf: SchemaScript.foreignKeyReferences(in: s))
      default:
        break
      }
    }
    // 2. Unique, non-partial, plain-column indexes whose column set a FK references, and
    //    indexes used as REPLICA IDENTITY (the base schema's ALTER TABLE needs them).
    var required: [QualifiedName] = []
    var created: [QualifiedName] = []
    var replicaIdentity: [QualifiedName] = []
    for s in statements {
      if case .replicaIdentityIndex(let idx) = s.kind, !replicaIdentity.contains(idx) {
        replicaIdentity.append(idx)
      }
    }
    for s in statements {
      guard case .index(let info) = s.kind else { continue }
      created.append(info.name)
      guard info.unique, !info.isPartial, let cols = info.columns else { continue }
      let key = cols.sorted()
      let needed = refs.contains { ref in
        ref.table.matches(info.table) && ref.columns.sorted() == key
      }
      if needed && !required.contains(info.name) { required.append(info.name) }
    }
    // 3. Partition indexes attached (transitively) to a required parent must exist
    //    before the ATTACH in base, so they stay in base too.
    var keep = required + replicaIdentity
    var changed = true
    while changed {
      changed = false
      for s in statements {
        guard case .attachIndexPartition(let parent, let child) = s.kind else { continue }
        if keep.contains(where: { $0.matches(parent) })
          && !keep.contains(where: { $0.matches(child) })
        {
          keep.append(child)
          changed = true
        }
      }
    }
    func kept(_ q: QualifiedName) -> Bool { keep.contains { $0.matches(q) } }
    func isCreatedIndex(_ q: QualifiedName) -> Bool { created.contains { $0.matches(q) } }

    let notValid: [ConstraintInfo] = statements.compactMap {
      if case .notValidConstraint(let c) = $0.kind { return c }
      return nil
    }

    // 4. Distribute.
    var files = SchemaFiles()
    files.fkRequiredUniqueIndexes = required
    for s in statements {
      switch s.kind {
      case .meta, .commentOnExtension, .grantOrRevoke, .alterOwner:
        continue
      case .createExtension(let name):
        if !files.extensions.contains(name) { files.extensions.append(name) }
      case .set:
        files.full.append(s)
        files.base.append(s)
        files.indexes.append(s)
        files.invalidConstraints.append(s)
      case .createSchema:
        files.full.append(s)
        files.base.append(s)
      case .index(let info):
        files.full.append(s)
        if kept(info.name) { files.base.append(s) } else { files.indexes.append(s) }
      case .attachIndexPartition(let parent, _):
        files.full.append(s)
        // Attaches of constraint-backed indexes (PRIMARY KEY / UNIQUE constraints on
        // partitioned tables) belong with their constraints in base.
        if kept(parent) || !isCreatedIndex(parent) {
          files.base.append(s)
        } else {
          files.indexes.append(s)
        }
      case .notValidConstraint:
        files.full.append(s)
        files.invalidConstraints.append(s)
      case .indexDependent(let idx):
        // Follows its index: into indexes.sql when the index is created there.
        files.full.append(s)
        if isCreatedIndex(idx) && !kept(idx) {
          files.indexes.append(s)
        } else {
          files.base.append(s)
        }
      case .replicaIdentityIndex:
        files.full.append(s)
        files.base.append(s)
      case .constraintDependent(let table, let name, let onDomain):
        // Follows its constraint: into invalid_constraints.sql when that is NOT VALID.
        files.full.append(s)
        let deferred = notValid.contains {
          $0.name == name && $0.onDomain == onDomain && $0.table.matches(table)
        }
        if deferred { files.invalidConstraints.append(s) } else { files.base.append(s) }
      case .other:
        files.full.append(s)
        files.base.append(s)
      }
    }
    return files
  }
}
