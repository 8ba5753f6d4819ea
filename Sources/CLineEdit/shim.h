#ifndef BELT_CLINEEDIT_SHIM_H
#define BELT_CLINEEDIT_SHIM_H
#include <stdio.h>
#include <readline.h>
#include <history.h>
#endif
