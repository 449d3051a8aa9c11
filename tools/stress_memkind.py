#!/usr/bin/python3
"""memkind alone (no hpcscreen, nothing to build): THREADS threads allocate and free tensor-like
sizes from one pmem kind capped at CAP_MB, for SECS seconds. Before the fix, 2 such processes at
once on 2 cores crashed (SIGSEGV inside libmemkind) in 5 of 8 runs of 15 s; the same with
MEMKIND_ARENA_NUM_PER_KIND=1 in the environment is the fix to compare.
    python3 tools/stress_memkind.py DIR [CAP_MB=64] [SECS=15] [THREADS=2]
Never run it with CAP_MB=0: memkind then fallocates without limit and fills the disk."""
import ctypes, os, random, sys, threading, time

d = sys.argv[1]
cap_mb, secs, nthreads = (int(sys.argv[2]) if len(sys.argv) > 2 else 64,
                          float(sys.argv[3]) if len(sys.argv) > 3 else 15.0,
                          int(sys.argv[4]) if len(sys.argv) > 4 else 2)
assert cap_mb >= 16, "CAP_MB must be at least 16 (and never 0)"
L = ctypes.CDLL("libmemkind.so.0")
L.memkind_create_pmem.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
L.memkind_posix_memalign.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.c_size_t, ctypes.c_size_t]
L.memkind_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
kind = ctypes.c_void_p()
assert L.memkind_create_pmem(d.encode(), cap_mb << 20, ctypes.byref(kind)) == 0

def worker(seed):
    rnd, live, end = random.Random(seed), [], time.time() + secs
    def free_one():
        L.memkind_free(kind, live.pop(rnd.randrange(len(live))))
    while time.time() < end:
        r = rnd.random()  # half small, most of the rest 1-40 MB, some larger than the cap
        n = (rnd.randint(1, 16384) if r < 0.5 else rnd.randint(1 << 20, 40 << 20) if r < 0.9
             else rnd.randint(40 << 20, 600 << 20)) + 64
        p = ctypes.c_void_p()
        if L.memkind_posix_memalign(kind, ctypes.byref(p), 64, n) == 0 and p.value:
            ctypes.memset(p.value, 1, 64)  # the tier's header
            live.append(p.value)
        else:  # out of memory: the batch is dropped, as the back-off does
            while live:
                free_one()
        if live and (len(live) > 6 or rnd.random() < 0.3):
            free_one()
    while live:
        free_one()

ts = [threading.Thread(target=worker, args=(os.getpid() + i,)) for i in range(nthreads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("ok")
