#include "CBuildInfo.h"

#ifndef BELT_BUILD_COMMIT
#define BELT_BUILD_COMMIT "unknown"
#endif

const char *belt_build_commit(void) { return BELT_BUILD_COMMIT; }
