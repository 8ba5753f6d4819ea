/* CBuildInfo: the commit belt was built from, for `belt --version`.
 * `make dist` compiles with -Xcc -DBELT_BUILD_COMMIT='"<commit>"'; any other build (plain
 * `swift build`, a source tarball without .git) says "unknown". A C define because Swift's
 * -D only sets conditions, never a value. */
#ifndef BELT_CBUILDINFO_H
#define BELT_CBUILDINFO_H

/* The commit (12 hex digits, "-dirty" when the work tree had changes), or "unknown". */
const char *belt_build_commit(void);

#endif
