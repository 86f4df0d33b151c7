/* The writer thread: the only thread that writes the queue while relayd runs.
 *
 * Jobs (new messages, recipient updates) are queued from the event loop; the thread takes
 * every job waiting since its last commit and writes them in one LMDB transaction (group
 * commit), then hands each job's result back to the loop through uv_async, where its
 * callback runs. Callers identify themselves with a token (e.g. a connection id) so a
 * result for a connection that has gone away is simply not matched. */
#ifndef HF_QUEUE_WR_H
#define HF_QUEUE_WR_H

#include <stdint.h>

#include <uv.h>

#include "queue.h"

struct queue_wr;

/* Runs on the loop thread after the job's transaction committed (status 0) or failed
 * (status -ENOSPC, -EIO, ...). For a put, id is the stored message id. */
typedef void (*queue_wr_cb)(int status, uint64_t token, uint64_t id, void *arg);

/* Starts the writer thread for q on loop. Returns 0 and *out, or -errno. */
int queue_wr_new(uv_loop_t *loop, struct queue *q, struct queue_wr **out);

/* Queues msg for storage. Takes msg (freed by the writer after the commit, even on error).
 * cb is called exactly once when this returns 0; never when it returns an error
 * (-ESHUTDOWN after queue_wr_stop, then msg has been freed). */
int queue_wr_put(struct queue_wr *w, struct queue_new_msg *msg, queue_wr_cb cb, uint64_t token,
                 void *arg);

/* Queues n updates (takes ups, a malloc'd array, freed after cb returns; cb may read each
 * ups[i].result through the array pointer passed as... see queue_wr_update_cb). */
typedef void (*queue_wr_update_cb)(int status, uint64_t token, struct queue_update *ups, size_t n,
                                   void *arg);
int queue_wr_update(struct queue_wr *w, struct queue_update *ups, size_t n, queue_wr_update_cb cb,
                    uint64_t token, void *arg);

/* Runs on the writer thread just before a combined commit: builds the messages to store
 * together with ups (a DSN and the removal of the recipients it reports on). May read q
 * and arg (which the loop must not touch until the job's callback). Returns 0 and *msgs
 * (a malloc'd array of *nmsgs malloc'd messages with their ids set, freed by the writer;
 * NULL/0 for none), or a negative code: the job then fails with it and nothing is applied. */
typedef int (*queue_wr_build_cb)(struct queue *q, const struct queue_update *ups, size_t n,
                                 void *arg, struct queue_new_msg ***msgs, size_t *nmsgs);

/* Queues a combined job: build() runs on the writer thread, then its messages and the n
 * updates are written in ONE transaction (queue_commit), never batched with other jobs.
 * Takes ups like queue_wr_update; cb runs on the loop as for queue_wr_update. */
int queue_wr_commit_job(struct queue_wr *w, struct queue_update *ups, size_t n,
                        queue_wr_build_cb build, queue_wr_update_cb cb, uint64_t token, void *arg);

/* Statistics, read on the loop thread. */
struct queue_wr_stats {
    uint64_t commits;
    uint64_t jobs;
    uint64_t max_batch;
    uint64_t failures;
};
void queue_wr_get_stats(struct queue_wr *w, struct queue_wr_stats *out);

/* Finishes every queued job (their callbacks run), stops and joins the thread, closes the
 * async handle and frees w once closed. Call once, from the loop thread. */
void queue_wr_stop(struct queue_wr *w);

#endif
