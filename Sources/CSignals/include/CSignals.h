/* CSignals: Ctrl-C for all of belt, with no Lua in it, so that Postgres/ and Operations/ can
 * see it without importing the Lua shim (design.md section 2).
 * While installed, the first SIGINT sets a flag that Swift wait loops poll, sends PQcancel to
 * every registered in-flight query and calls the interrupt callback given at install (the Lua
 * shim's, which stops the running script); a second SIGINT restores the default action and
 * re-raises it, so a belt that does not stop can still be killed. */
#ifndef BELT_CSIGNALS_H
#define BELT_CSIGNALS_H
#include <libpq-fe.h>

/* Called from the signal handler: must be async-signal-safe (lua_sethook is). */
typedef void (*belt_interrupt_fn)(void);

/* Clears the flag, installs the handler and unblocks SIGINT. on_interrupt may be NULL. */
void belt_install_sigint_handler(belt_interrupt_fn on_interrupt);
/* Restores the default action; the flag keeps its value. */
void belt_remove_sigint_handler(void);

int belt_interrupted(void);
/* Re-arms Ctrl-C, e.g. before compensation hooks run after an interrupt. */
void belt_clear_interrupt(void);

/* In-flight libpq cancel handles, cancelled on the first SIGINT. register returns a slot for
 * unregister, or -1 when all slots are taken (that query then cannot be cancelled). */
int belt_register_cancel(PGcancel *c);
void belt_unregister_cancel(int slot);

#endif
