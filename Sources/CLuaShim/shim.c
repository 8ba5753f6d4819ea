#include "CLuaShim.h"
#include "CSignals.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static belt_dispatch_fn dispatch;
static char errormt_key;

void belt_set_dispatch(belt_dispatch_fn fn) { dispatch = fn; }

int belt_trampoline(lua_State *L) {
  int n = dispatch(L); /* Swift runs and returns; it never raises */
  if (n == BELT_RAISE)
    return lua_error(L); /* longjmp from here crosses only C and Lua frames */
  return n;
}

void belt_push_trampoline(lua_State *L, lua_Integer index) {
  lua_pushinteger(L, index);
  lua_pushcclosure(L, belt_trampoline, 1);
}

static void *belt_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud; (void)osize;
  if (nsize == 0) { free(ptr); return NULL; }
  void *p = realloc(ptr, nsize);
  if (p == NULL) {
    fputs("belt: out of memory in the Lua interpreter\n", stderr);
    abort();
  }
  return p;
}

static int belt_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "belt: unprotected Lua error: %s\n", msg ? msg : "(not a string)");
  return 0; /* Lua aborts */
}

lua_State *belt_newstate(void) {
  lua_State *L = lua_newstate(belt_alloc, NULL);
  if (L) lua_atpanic(L, belt_panic);
  return L;
}

int belt_openlibs(lua_State *L) {
  static const luaL_Reg libs[] = {
    {LUA_GNAME, luaopen_base},       {LUA_TABLIBNAME, luaopen_table},
    {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
    {LUA_OSLIBNAME, luaopen_os},      {LUA_IOLIBNAME, luaopen_io},
    {LUA_DBLIBNAME, luaopen_debug},
    {NULL, NULL}};
  for (const luaL_Reg *lib = libs; lib->func; lib++) {
    luaL_requiref(L, lib->name, lib->func, 1);
    lua_pop(L, 1);
  }
  /* No dynamic loading or process control from runbooks: against accidents, not a hostile
   * script (see CLuaShim.h). */
  lua_pushnil(L); lua_setglobal(L, "dofile");
  lua_pushnil(L); lua_setglobal(L, "loadfile");
  lua_getglobal(L, "os");
  lua_pushnil(L); lua_setfield(L, -2, "execute");
  lua_pushnil(L); lua_setfield(L, -2, "exit");
  lua_pushnil(L); lua_setfield(L, -2, "remove");
  lua_pushnil(L); lua_setfield(L, -2, "rename");
  lua_pushnil(L); lua_setfield(L, -2, "setlocale");
  lua_pushnil(L); lua_setfield(L, -2, "tmpname");
  lua_pop(L, 1);
  lua_getglobal(L, "io");
  lua_pushnil(L); lua_setfield(L, -2, "popen");
  lua_pop(L, 1);
  return 0;
}

void belt_set_runtime(lua_State *L, void *rt) { *(void **)lua_getextraspace(L) = rt; }
void *belt_get_runtime(lua_State *L) { return *(void **)lua_getextraspace(L); }

int belt_upvalueindex(int i) { return lua_upvalueindex(i); }
void belt_pop(lua_State *L, int n) { lua_pop(L, n); }
int belt_isnoneornil(lua_State *L, int idx) { return lua_isnoneornil(L, idx); }

/* The innermost "chunk:line" in an operator's script: belt's own chunks ("=prelude", "=belt",
 * "@runbooks/...") are skipped, so that a failing belt.* call is reported at the script line
 * that made it. Pushes nothing and returns 0 when there is no such frame (a shipped runbook). */
static int push_position(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
    if (ar.source[0] == '=' || strncmp(ar.source, "@runbooks/", 10) == 0) continue;
    /* The full file name, not short_src: that one is cut at LUA_IDSIZE. */
    lua_pushfstring(L, "%s:%d", ar.source[0] == '@' ? ar.source + 1 : ar.short_src, ar.currentline);
    return 1;
  }
  return 0;
}

static void rawset_string(lua_State *L, int t, const char *key) {
  lua_pushstring(L, key);
  lua_insert(L, -2);
  lua_rawset(L, t);
}

int belt_msghandler(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE) {
    /* error("text") and runtime errors: the text already starts with "chunk:line:". */
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
      if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        msg = lua_tostring(L, -1);
      else
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    lua_createtable(L, 0, 4);
    int t = lua_gettop(L);
    lua_pushstring(L, "script_error"); rawset_string(L, t, "code");
    lua_pushstring(L, msg); rawset_string(L, t, "message");
    lua_pushboolean(L, 0); rawset_string(L, t, "retryable");
    luaL_traceback(L, L, NULL, 1); rawset_string(L, t, "traceback");
    belt_set_errormt(L);
    return 1;
  }
  lua_settop(L, 1);
  lua_pushstring(L, "traceback");
  if (lua_rawget(L, 1) == LUA_TNIL) {
    /* First time through a handler, so the stack is still the one that raised. The runner's
     * xpcall gets here first; belt_pcall's handler then sees the traceback and keeps it. */
    lua_pop(L, 1);
    luaL_traceback(L, L, NULL, 1); rawset_string(L, 1, "traceback");
    if (push_position(L)) rawset_string(L, 1, "position");
  }
  lua_settop(L, 1);
  return 1;
}

int belt_pcall(lua_State *L, int nargs, int nres, int traceback) {
  if (!traceback) return lua_pcall(L, nargs, nres, 0);
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, belt_msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  return status;
}

static int collect_keys(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_newtable(L);
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, ++n);
  }
  return 1;
}

int belt_pcall_keys(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, collect_keys);
  lua_pushvalue(L, idx);
  return lua_pcall(L, 1, 1, 0);
}

static int tostring_helper(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

int belt_pcall_tostring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, tostring_helper);
  lua_pushvalue(L, idx);
  return lua_pcall(L, 1, 1, 0);
}

static int setglobal_helper(lua_State *L) {
  lua_setglobal(L, lua_tostring(L, lua_upvalueindex(1)));
  return 0;
}

int belt_pcall_setglobal(lua_State *L, const char *name) {
  lua_pushstring(L, name);
  lua_pushcclosure(L, setglobal_helper, 1);
  lua_insert(L, -2);
  return lua_pcall(L, 1, 0, 0);
}

static int error_tostring(lua_State *L) {
  /* No luaL_Buffer here: its stack slots must not be mixed with other pushes. */
  int top = lua_gettop(L);
  lua_getfield(L, 1, "dc");
  lua_getfield(L, 1, "db");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "code");
  const char *dc = lua_tostring(L, top + 1);
  const char *db = lua_tostring(L, top + 2);
  const char *msg = lua_tostring(L, top + 3);
  const char *code = lua_tostring(L, top + 4);
  int n = 0;
  if (dc && db) { lua_pushfstring(L, "%s/%s: ", dc, db); n++; }
  else if (dc) { lua_pushfstring(L, "%s: ", dc); n++; }
  lua_pushstring(L, msg ? msg : "error"); n++;
  if (code) { lua_pushfstring(L, " [%s]", code); n++; }
  lua_concat(L, n);
  return 1;
}

static int init_errormt(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, "belt.error");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &errormt_key);
  /* For the prelude's runbook runner (xpcall), which takes it and clears the global. */
  lua_pushcfunction(L, belt_msghandler);
  lua_setglobal(L, "_belt_msghandler");
  return 0;
}

int belt_pcall_init_errormt(lua_State *L) {
  lua_pushcfunction(L, init_errormt);
  return lua_pcall(L, 0, 0, 0);
}

void belt_set_errormt(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &errormt_key);
  lua_setmetatable(L, -2);
}

int belt_is_error(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!lua_getmetatable(L, idx)) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &errormt_key);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* ---- SIGINT: CSignals owns the handler; the Lua side only registers a stop hook ---- */
static lua_State *volatile sig_state = NULL;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lua_newtable(L);
  lua_pushstring(L, "interrupted");
  lua_setfield(L, -2, "code");
  lua_pushstring(L, "interrupted by the user (Ctrl-C)");
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "retryable");
  belt_set_errormt(L);
  lua_error(L);
}

/* Runs in the signal handler: lua_sethook is the one Lua call that is safe there (lua.c). */
static void arm_stop_hook(void) {
  lua_State *L = sig_state;
  if (L) lua_sethook(L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void belt_install_sigint(lua_State *L) {
  sig_state = L;
  belt_install_sigint_handler(arm_stop_hook);
}

void belt_remove_sigint(void) {
  belt_remove_sigint_handler();
  lua_State *L = sig_state;
  sig_state = NULL;
  if (L) lua_sethook(L, NULL, 0, 0);
}
