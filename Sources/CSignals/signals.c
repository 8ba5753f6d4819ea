#include "CSignals.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t interrupted_flag = 0;
static volatile belt_interrupt_fn interrupt_callback = NULL;
#define MAX_CANCELS 256
static PGcancel *volatile cancels[MAX_CANCELS];

static void on_sigint(int sig) {
  if (interrupted_flag) { signal(sig, SIG_DFL); raise(sig); return; }
  interrupted_flag = 1;
  char errbuf[8];
  for (int i = 0; i < MAX_CANCELS; i++) {
    PGcancel *c = cancels[i];
    if (c) PQcancel(c, errbuf, sizeof errbuf); /* documented as safe in a signal handler */
  }
  belt_interrupt_fn fn = interrupt_callback;
  if (fn) fn();
}

void belt_install_sigint_handler(belt_interrupt_fn on_interrupt) {
  interrupted_flag = 0;
  interrupt_callback = on_interrupt;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  /* A parent may have started belt with SIGINT blocked (the mask is inherited across exec):
     Ctrl-C must still reach the handler. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void belt_remove_sigint_handler(void) {
  signal(SIGINT, SIG_DFL);
  interrupt_callback = NULL;
}

int belt_interrupted(void) { return interrupted_flag; }
void belt_clear_interrupt(void) { interrupted_flag = 0; }

int belt_register_cancel(PGcancel *c) {
  for (int i = 0; i < MAX_CANCELS; i++) {
    if (cancels[i] == NULL) {
      if (__sync_bool_compare_and_swap(&cancels[i], NULL, c)) return i;
    }
  }
  return -1;
}

void belt_unregister_cancel(int slot) {
  if (slot >= 0 && slot < MAX_CANCELS) cancels[slot] = NULL;
}
