#ifndef BELT_CLINEEDIT_SHIM_H
#define BELT_CLINEEDIT_SHIM_H
#include <stdio.h>
#include <readline.h>
#include <history.h>

/* Installs the completion entry function; no character is appended after a match (a `(`
   usually follows a function name). Set here: Swift 6 rejects writes to C globals. */
static inline void belt_rl_set_completion(rl_compentry_func_t *entry) {
  rl_completion_entry_function = entry;
  rl_completion_append_character = 0;
}
#endif
