/* A small team of worker threads for the kernels' one level of parallelism.
 *
 * fs_team_run(n, fn, ctx) runs fn(ctx, 0) .. fn(ctx, n - 1) (the chunks of a batch, or the
 * column blocks of a weight gradient) and returns when all are done. The calling thread
 * takes part: every thread claims the next task from one counter until none is left, so a
 * worker that is slow to wake never holds the call up (the caller runs the task itself),
 * and a task's result does not depend on which thread ran it.
 *
 * Why not OpenMP or Python threads: libgomp's idle team threads spin for 5-8 ms of CPU
 * after every parallel region (its wait policy is process-wide and shared with PyTorch, so
 * a library cannot change it), which made 2-thread calls 3-25x slower on a busy 2-core
 * machine; a Python thread pool costs 0.1-0.2 ms per wake-up (the GIL hand-over), more
 * than a small recurrence saves by splitting. Here an idle worker spins for
 * FS_TEAM_SPIN_US microseconds (default 100; environment FASTSEQ_SPIN_US) and then sleeps
 * on a condition variable, so back-to-back calls start within a microsecond and an idle
 * process costs no CPU.
 *
 * One call at a time uses the workers: a call that finds them busy (another Python thread
 * is in a call) runs its tasks on its own thread, with the same results. Workers are
 * started on first use, kept for the life of the process, and forgotten in a forked child
 * (which starts its own). Without POSIX threads every call runs serially.
 */
#ifndef FASTSEQ_TEAM_H
#define FASTSEQ_TEAM_H

#include <stdint.h>
#include <stdlib.h>

typedef void (*fs_task_fn)(void *ctx, int k);

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define FS_TEAM_MAX 64

#if defined(__x86_64__) || defined(__i386__)
#define FS_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FS_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define FS_CPU_RELAX() ((void)0)
#endif

static struct {
    pthread_mutex_t start_lock;           /* starting workers */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    atomic_int busy;                      /* a call owns the job slot */
    atomic_int n_workers;
    atomic_int sleepers;
    /* ticket: generation << 16 | next task index; one atomic word, so a late worker can
       tell its job from the next one */
    atomic_uint_fast64_t ticket;
    atomic_int done;                      /* tasks finished in this generation */
    fs_task_fn fn;
    void *ctx;
    int n_tasks;
    long spin_ns;
    int configured;                       /* spin time read, fork handler installed */
} fs_team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static long fs_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* claim and run tasks of generation gen until none is left; returns how many ran */
static int fs_team_work(uint64_t gen) {
    int ran = 0;
    for (;;) {
        uint64_t t = atomic_load(&fs_team.ticket);
        if ((t >> 16) != gen) return ran;             /* that job is over */
        int k = (int)(t & 0xffff);
        if (k >= fs_team.n_tasks) return ran;
        if (!atomic_compare_exchange_weak(&fs_team.ticket, &t, t + 1)) continue;
        /* claimed: the job cannot finish (nor fn / ctx change) before this task is done */
        fs_team.fn(fs_team.ctx, k);
        atomic_fetch_add(&fs_team.done, 1);
        ran++;
    }
}

static void *fs_team_worker(void *arg) {
    (void)arg;
    uint64_t seen = atomic_load(&fs_team.ticket) >> 16;
    for (;;) {
        uint64_t gen;
        long start = 0;
        int spins = 0;
        while ((gen = atomic_load(&fs_team.ticket) >> 16) == seen) {
            FS_CPU_RELAX();
            if (++spins < 64) continue;
            spins = 0;
            long now = fs_now_ns();
            if (!start) start = now;
            if (now - start < fs_team.spin_ns) continue;
            pthread_mutex_lock(&fs_team.sleep_lock);
            atomic_fetch_add(&fs_team.sleepers, 1);
            while ((gen = atomic_load(&fs_team.ticket) >> 16) == seen)
                pthread_cond_wait(&fs_team.wake, &fs_team.sleep_lock);
            atomic_fetch_sub(&fs_team.sleepers, 1);
            pthread_mutex_unlock(&fs_team.sleep_lock);
            break;
        }
        seen = gen;
        fs_team_work(gen);
    }
    return NULL;
}

static void fs_team_after_fork_child(void) {
    /* the workers did not survive the fork; the locks may have been held by them */
    pthread_mutex_init(&fs_team.start_lock, NULL);
    pthread_mutex_init(&fs_team.sleep_lock, NULL);
    pthread_cond_init(&fs_team.wake, NULL);
    atomic_store(&fs_team.n_workers, 0);
    atomic_store(&fs_team.sleepers, 0);
    atomic_store(&fs_team.busy, 0);
}

/* make sure n_workers >= want (best effort: a failed pthread_create leaves fewer) */
static void fs_team_grow(int want) {
    if (want > FS_TEAM_MAX - 1) want = FS_TEAM_MAX - 1;
    if (atomic_load(&fs_team.n_workers) >= want) return;
    pthread_mutex_lock(&fs_team.start_lock);
    if (!fs_team.configured) {
        const char *env = getenv("FASTSEQ_SPIN_US");
        long us = env ? atol(env) : 100;
        fs_team.spin_ns = (us < 0 ? 0 : us) * 1000L;
        pthread_atfork(NULL, NULL, fs_team_after_fork_child);
        fs_team.configured = 1;
    }
    while (atomic_load(&fs_team.n_workers) < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&th, &attr, fs_team_worker, NULL);
        pthread_attr_destroy(&attr);
        if (err) break;
        atomic_fetch_add(&fs_team.n_workers, 1);
    }
    pthread_mutex_unlock(&fs_team.start_lock);
}

static int fs_team_workers(void) { return atomic_load(&fs_team.n_workers); }

/* fn(ctx, k) for k in [0, n), on up to n threads (the caller and n - 1 workers) */
static void fs_team_run(int n, fs_task_fn fn, void *ctx) {
    int expected = 0;
    if (n > 1 && n <= 0xffff) {
        fs_team_grow(n - 1);
        if (atomic_load(&fs_team.n_workers) > 0
                && atomic_compare_exchange_strong(&fs_team.busy, &expected, 1)) {
            uint64_t gen = (atomic_load(&fs_team.ticket) >> 16) + 1;
            fs_team.fn = fn;
            fs_team.ctx = ctx;
            fs_team.n_tasks = n;
            atomic_store(&fs_team.done, 0);
            atomic_store(&fs_team.ticket, gen << 16);          /* publish */
            if (atomic_load(&fs_team.sleepers) > 0) {
                pthread_mutex_lock(&fs_team.sleep_lock);
                pthread_cond_broadcast(&fs_team.wake);
                pthread_mutex_unlock(&fs_team.sleep_lock);
            }
            fs_team_work(gen);
            while (atomic_load(&fs_team.done) < n)          /* tasks claimed by workers */
                FS_CPU_RELAX();
            atomic_store(&fs_team.busy, 0);
            return;
        }
    }
    for (int k = 0; k < n; k++)
        fn(ctx, k);
}

#else  /* no POSIX threads: serial */

static int fs_team_workers(void) { return 0; }

static void fs_team_run(int n, fs_task_fn fn, void *ctx) {
    for (int k = 0; k < n; k++)
        fn(ctx, k);
}

#endif

#endif  /* FASTSEQ_TEAM_H */
