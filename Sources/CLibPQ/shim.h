#ifndef BELT_CLIBPQ_SHIM_H
#define BELT_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
