/* The time queue lifecycle decisions use: retry schedule, expiry, delay warnings, the
 * postmaster warning, DSN dates. It is the system clock, except in tests: when relayd starts
 * with HF_TEST_TIME_OFFSET set (seconds, may be 0), every such decision reads the system
 * clock plus that offset, and the offset can be moved forward through the control socket
 * (relayctl test-clock-advance SECONDS), so end-to-end tests can make days pass without
 * sleeping. TEST-ONLY: never set HF_TEST_TIME_OFFSET in production. Loop thread only. */
#ifndef HF_CLOCK_H
#define HF_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Reads HF_TEST_TIME_OFFSET once (main, at start). Returns 0, or -EINVAL for a value that is
 * not a decimal number of seconds (relayd refuses to start). */
int clock_init_from_env(void);

/* Unix seconds: the system clock plus the test offset (0 unless the test clock is on). */
int64_t clock_now(void);

/* True when HF_TEST_TIME_OFFSET was set at start. */
bool clock_is_test(void);

/* Moves the test clock forward by secs (>= 0). Returns 0, -EPERM when the test clock is off,
 * -EINVAL for a negative or absurd step (over ten years). */
int clock_advance(int64_t secs);

#endif
