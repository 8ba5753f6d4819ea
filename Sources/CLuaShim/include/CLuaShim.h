/* CLuaShim: the only C code that may raise Lua errors (longjmp) on Swift's behalf.
 * See docs: style.md section C. Swift never calls lua_error; it returns BELT_RAISE
 * from the dispatch function and the trampoline below raises after Swift has returned. */
#ifndef BELT_CLUASHIM_H
#define BELT_CLUASHIM_H
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define BELT_RAISE (-1)

typedef int (*belt_dispatch_fn)(lua_State *L);

/* Dispatch: set once; the trampoline is the only lua_CFunction Swift pushes. */
void belt_set_dispatch(belt_dispatch_fn fn);
int belt_trampoline(lua_State *L);
void belt_push_trampoline(lua_State *L, lua_Integer index);

/* State creation: abort-on-OOM allocator and a printing panic handler. */
lua_State *belt_newstate(void);
/* Runs under pcall: opens base, table, string, math, utf8, coroutine, os (limited), io (limited)
 * and debug (scripts use debug.traceback). dofile, loadfile, os.execute/exit/remove/rename/
 * setlocale/tmpname and io.popen are removed. That guards against accidents, not against a
 * hostile script: debug.getregistry and debug.setmetatable reach past it. */
int belt_openlibs(lua_State *L);

/* Per-state pointer to the Swift runtime object (LUA_EXTRASPACE). */
void belt_set_runtime(lua_State *L, void *rt);
void *belt_get_runtime(lua_State *L);

/* Macro re-exports. */
int belt_upvalueindex(int i);
void belt_pop(lua_State *L, int n);
int belt_isnoneornil(lua_State *L, int idx);

/* Protected calls. belt_pcall pushes belt_msghandler below the function when traceback != 0. */
int belt_pcall(lua_State *L, int nargs, int nres, int traceback);
/* Leaves the error a table so that Swift can read its fields (design.md section 5). A table
 * (a belt error or the script's own) gets `traceback` and, when an operator's script is on
 * the stack, `position` = "file:line" of its innermost frame (belt's own chunks, "=..." and
 * "@runbooks/...", are skipped); a table that already has a traceback is left alone. Any
 * other value becomes {code = "script_error", message = tostring(value), traceback = ...}
 * with the shared error metatable. Also set as the global _belt_msghandler for the prelude. */
int belt_msghandler(lua_State *L);

/* Protected helpers (each returns a Lua status; results on the stack on success). */
int belt_pcall_keys(lua_State *L, int idx);       /* pushes a sequence of the keys of table at idx */
int belt_pcall_tostring(lua_State *L, int idx);   /* pushes luaL_tolstring(value at idx) */
int belt_pcall_setglobal(lua_State *L, const char *name); /* pops value, sets global */
int belt_pcall_init_errormt(lua_State *L);        /* the shared error metatable, _belt_msghandler */

/* Sets the shared error metatable on the table at the top of the stack. '-' safe. */
void belt_set_errormt(lua_State *L);
/* Is the value at idx a belt error table (has the shared metatable)? '-' safe. */
int belt_is_error(lua_State *L, int idx);

/* Ctrl-C while L runs a script: installs CSignals' handler with a callback that makes L stop
 * at its next instruction with an "interrupted" belt error; remove uninstalls both. */
void belt_install_sigint(lua_State *L);
void belt_remove_sigint(void);

#endif
