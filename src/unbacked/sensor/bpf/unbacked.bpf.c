// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* unbacked live sensor: every act that procures executable memory, as it happens.
 *
 * Syscall tracepoints (no kprobes needed): mmap / mprotect / pkey_mprotect with PROT_EXEC (or,
 * for mprotect, taking it away), memfd_create, execve/execveat (joined to sched_process_exec),
 * connect (IPv4/IPv6); BTF tracepoints for process fork/exec/exit. At syscall exit the program
 * looks the target region up with bpf_find_vma (backing file or anonymous, vm_flags, VMA size),
 * locates the syscall instruction and the caller's return address (read from the user stack) in
 * their VMAs, and probes for an ELF or PE header at and below the region.
 *
 * Loss is never silent: a full ring buffer bumps a per-CPU counter; records are numbered so
 * gaps show; a (process, caller) pair that floods is rate limited and the number it suppressed
 * travels in its next record. Records that carry an ELF/PE header are never suppressed.
 *
 * Built with clang -target bpf against a vmlinux.h generated from the running kernel's BTF
 * (CO-RE): no kernel headers at run time.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "unbacked.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PROT_READ 0x1
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define VM_READ 0x1
#define VM_WRITE 0x2
#define VM_EXEC 0x4
#define AF_INET 2
#define AF_INET6 10
#define PAGE_SIZE 4096ULL

#ifndef RINGBUF_BYTES
#define RINGBUF_BYTES (32 * 1024 * 1024)
#endif

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, RINGBUF_BYTES);
} ub_events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, UB_STAT_MAX);
    __type(key, __u32);
    __type(value, __u64);
} ub_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ub_config);
} ub_config_map SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} ub_seqno SEC(".maps");

/* record mode: the process tree being recorded (tgid -> 1) */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);
    __type(value, __u8);
} ub_tracked SEC(".maps");

struct inflight {
    __u64 ts;
    __u64 args[4];
    __u32 type;
    __u32 old_prot;
    __u32 have_old;
    __u32 family;
    __u16 port;
    __u16 pad;
    __u32 pad2;
    __u8 addr[16];
    char str[UB_STR_LEN];
};

/* syscall enter -> exit, per thread; LRU so that entries of threads killed inside a syscall
 * age out instead of filling the map */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct inflight);
} ub_inflight SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct inflight);
} ub_scratch SEC(".maps");

struct rl_key {
    __u32 tgid;
    __u32 type;
    __u64 caller;
};

struct rl_val {
    __u64 window_start;
    __u64 count;
    __u64 suppressed;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, struct rl_key);
    __type(value, struct rl_val);
} ub_ratelimit SEC(".maps");

/* executable path per process: walking the dentries costs more than the rest of a record, and
 * it only changes at exec (entry dropped there and at exit) */
struct exe_path {
    char comps[UB_PATH_COMPS][UB_COMP_LEN];
    __u8 depth;
    __u8 trunc;
    __u8 pad[2];
    __u32 dev;
    __u64 ino;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 8192);
    __type(key, __u32);
    __type(value, struct exe_path);
} ub_exe_cache SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exe_path);
} ub_exe_scratch SEC(".maps");

/* processes holding a /proc/PID/mem descriptor open for writing (tgid -> 1): only their writes
 * are looked at; inherited through fork, dropped at exit */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 8192);
    __type(key, __u32);
    __type(value, __u8);
} ub_mem_writers SEC(".maps");

/* the target of a cross-process act: its task by pid (kernel >= 6.1; without it the records
 * carry the pid the call named and no mapping) */
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

struct vma_info {
    __u64 start, end, flags, pgoff;
    __u64 file;
    __u32 kind;
    __u32 found;
};

static __always_inline void stat_add(__u32 slot, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&ub_stats, &slot);
    if (v)
        *v += n;
}

static __always_inline struct ub_config *get_config(void)
{
    __u32 zero = 0;
    return bpf_map_lookup_elem(&ub_config_map, &zero);
}

/* Should events of the current process be recorded at all? */
static __always_inline int wanted(struct ub_config *cfg, __u32 tgid)
{
    if (!cfg || tgid == cfg->self_tgid)
        return 0;
    if (cfg->filter_tree && !bpf_map_lookup_elem(&ub_tracked, &tgid))
        return 0;
    return 1;
}

static long vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
    struct vma_info *vi = data;
    struct mm_struct *mm = task->mm;

    vi->found = 1;
    vi->start = vma->vm_start;
    vi->end = vma->vm_end;
    vi->flags = vma->vm_flags;
    vi->pgoff = vma->vm_pgoff;
    vi->file = (__u64)vma->vm_file;
    if (vi->file) {
        vi->kind = UB_VMA_FILE;
    } else if ((__u64)BPF_CORE_READ(mm, context.vdso) == vi->start) {
        vi->kind = UB_VMA_VDSO;
    } else {
        __u64 stack = BPF_CORE_READ(mm, start_stack);
        __u64 brk0 = BPF_CORE_READ(mm, start_brk), brk = BPF_CORE_READ(mm, brk);
        if (stack >= vi->start && stack < vi->end)
            vi->kind = UB_VMA_STACK;
        else if (vi->start < brk && vi->end > brk0)
            vi->kind = UB_VMA_HEAP;
        else
            vi->kind = UB_VMA_ANON;
    }
    return 0;
}

static __always_inline int lookup_vma(struct task_struct *task, __u64 addr, struct vma_info *vi)
{
    __builtin_memset(vi, 0, sizeof(*vi));
    if (bpf_find_vma(task, addr, vma_cb, vi, 0) != 0) {
        vi->found = 0;
        return -1;
    }
    return 0;
}

static __always_inline void file_name(__u64 file, char *out)
{
    struct file *f = (struct file *)file;
    const unsigned char *name = BPF_CORE_READ(f, f_path.dentry, d_name.name);
    bpf_probe_read_kernel_str(out, UB_NAME_LEN, name);
}

/* Path components of a file, innermost first, crossing mount points. */
static __always_inline void file_path(__u64 file, char (*out)[UB_COMP_LEN], __u8 *depth,
                                      __u8 *trunc)
{
    struct file *f = (struct file *)file;
    struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
    struct vfsmount *vfsmnt = BPF_CORE_READ(f, f_path.mnt);
    __u64 mnt_off = bpf_core_field_offset(struct mount, mnt);
    struct mount *mnt = (struct mount *)((void *)vfsmnt - mnt_off);
    __u32 n = 0;

    for (int i = 0; i < UB_PATH_COMPS + 4; i++) {
        struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
        if (d == root) {
            struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
            if (parent == mnt)
                break;
            d = BPF_CORE_READ(mnt, mnt_mountpoint);
            mnt = parent;
            vfsmnt = (struct vfsmount *)((void *)parent + mnt_off);
            continue;
        }
        if (n >= UB_PATH_COMPS) {
            *trunc = 1;
            break;
        }
        const unsigned char *name = BPF_CORE_READ(d, d_name.name);
        bpf_probe_read_kernel_str(out[n & (UB_PATH_COMPS - 1)], UB_COMP_LEN, name);
        n++;
        struct dentry *p = BPF_CORE_READ(d, d_parent);
        if (p == d) /* pseudo file (memfd, anon inode): its name is the whole path */
            break;
        d = p;
    }
    *depth = n;
}

static __always_inline void fill_task(struct ub_event *e, struct task_struct *task)
{
    e->pid = BPF_CORE_READ(task, tgid);
    e->tid = BPF_CORE_READ(task, pid);
    e->ppid = BPF_CORE_READ(task, real_parent, tgid);
    e->uid = (__u32)bpf_get_current_uid_gid();
    e->proc_start = BPF_CORE_READ(task, group_leader, start_time);
    e->parent_start = BPF_CORE_READ(task, real_parent, group_leader, start_time);
    bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), BPF_CORE_READ(task, comm));
    __u32 tgid = e->pid;
    struct exe_path *cached = bpf_map_lookup_elem(&ub_exe_cache, &tgid);
    if (cached) {
        __builtin_memcpy(e->exe, cached->comps, sizeof(e->exe));
        e->exe_depth = cached->depth;
        e->exe_trunc = cached->trunc;
        e->exe_ino = cached->ino;
        e->exe_dev = cached->dev;
        return;
    }
    struct file *exe = BPF_CORE_READ(task, mm, exe_file);
    if (!exe)
        return;
    file_path((__u64)exe, e->exe, &e->exe_depth, &e->exe_trunc);
    e->exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
    e->exe_dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
    __u32 zero = 0;
    struct exe_path *slot = bpf_map_lookup_elem(&ub_exe_scratch, &zero);
    if (slot) {
        __builtin_memcpy(slot->comps, e->exe, sizeof(slot->comps));
        slot->depth = e->exe_depth;
        slot->trunc = e->exe_trunc;
        slot->ino = e->exe_ino;
        slot->dev = e->exe_dev;
        bpf_map_update_elem(&ub_exe_cache, &tgid, slot, BPF_ANY);
    }
}

static __always_inline struct ub_event *reserve(void)
{
    struct ub_event *e = bpf_ringbuf_reserve(&ub_events, sizeof(struct ub_event), 0);
    if (!e) {
        stat_add(UB_STAT_LOST, 1);
        return 0;
    }
    /* zeroed in pieces: clang inlines memset only up to a size */
    _Static_assert(sizeof(*e) > 1024 && sizeof(*e) <= 1536, "record size for the zeroing");
    __u64 *w = (__u64 *)e;
    __builtin_memset(w, 0, 512);
    asm volatile("" ::: "memory"); /* keep clang from merging the pieces back into one */
    __builtin_memset(w + 64, 0, 512);
    asm volatile("" ::: "memory");
    __builtin_memset(w + 128, 0, sizeof(*e) - 1024);
    __u32 zero = 0;
    __u64 *s = bpf_map_lookup_elem(&ub_seqno, &zero);
    if (s)
        e->seq = __sync_fetch_and_add(s, 1);
    e->ts = bpf_ktime_get_ns();
    return e;
}

/* No wakeup per record (the reader polls every few tens of milliseconds): a wakeup costs the
 * traced process an irq_work and the reader a context switch per event. Once the ring is a
 * quarter full the reader is woken at once, so bursts are drained early. */
static __always_inline void submit(struct ub_event *e)
{
    stat_add(UB_STAT_EMITTED, 1);
    __u64 avail = bpf_ringbuf_query(&ub_events, BPF_RB_AVAIL_DATA);
    __u64 size = bpf_ringbuf_query(&ub_events, BPF_RB_RING_SIZE);
    bpf_ringbuf_submit(e, avail * 4 > size ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* ------------------------------------------------------------------ syscall enter */

static __always_inline struct inflight *new_inflight(void)
{
    __u32 zero = 0;
    struct inflight *fl = bpf_map_lookup_elem(&ub_scratch, &zero);
    if (fl)
        __builtin_memset(fl, 0, sizeof(*fl));
    return fl;
}

static __always_inline void save_inflight(struct inflight *fl)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    if (bpf_map_update_elem(&ub_inflight, &tid, fl, BPF_ANY) != 0)
        stat_add(UB_STAT_INFLIGHT_FULL, 1);
}

static __always_inline int enter_mem(struct trace_event_raw_sys_enter *ctx, __u32 type)
{
    struct ub_config *cfg = get_config();
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!wanted(cfg, tgid)) {
        stat_add(UB_STAT_FILTERED, 1);
        return 0;
    }
    __u64 addr = ctx->args[0], len = ctx->args[1], prot = ctx->args[2];
    __u32 old_prot = 0, have_old = 0;
    if (type != UB_MMAP) {
        /* mprotect: record changes to or from executable; the old protection comes from
         * the VMA as it is before the change */
        struct vma_info vi;
        struct task_struct *task = bpf_get_current_task_btf();
        if (lookup_vma(task, addr, &vi) == 0) {
            have_old = 1;
            old_prot = (vi.flags & VM_READ ? PROT_READ : 0) |
                       (vi.flags & VM_WRITE ? PROT_WRITE : 0) |
                       (vi.flags & VM_EXEC ? PROT_EXEC : 0);
        }
        if (!(prot & PROT_EXEC) && !(old_prot & PROT_EXEC)) {
            stat_add(UB_STAT_FILTERED, 1);
            return 0;
        }
    } else if (!(prot & PROT_EXEC)) {
        stat_add(UB_STAT_FILTERED, 1);
        return 0;
    }
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = type;
    fl->args[0] = addr;
    fl->args[1] = len;
    fl->args[2] = prot;
    fl->args[3] = type == UB_MMAP ? ctx->args[3] | ((__u64)ctx->args[4] << 32) : 0;
    fl->old_prot = old_prot;
    fl->have_old = have_old;
    save_inflight(fl);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int ub_enter_mmap(struct trace_event_raw_sys_enter *ctx)
{
    return enter_mem(ctx, UB_MMAP);
}

SEC("tracepoint/syscalls/sys_enter_mprotect")
int ub_enter_mprotect(struct trace_event_raw_sys_enter *ctx)
{
    return enter_mem(ctx, UB_MPROTECT);
}

SEC("tracepoint/syscalls/sys_enter_pkey_mprotect")
int ub_enter_pkey_mprotect(struct trace_event_raw_sys_enter *ctx)
{
    return enter_mem(ctx, UB_PKEY_MPROTECT);
}

SEC("tracepoint/syscalls/sys_enter_memfd_create")
int ub_enter_memfd_create(struct trace_event_raw_sys_enter *ctx)
{
    if (!wanted(get_config(), bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_MEMFD_CREATE;
    fl->args[0] = ctx->args[0]; /* name: read at exit, once the kernel has faulted it in */
    fl->args[1] = ctx->args[1]; /* flags */
    save_inflight(fl);
    return 0;
}

static __always_inline int enter_exec(struct trace_event_raw_sys_enter *ctx, int at)
{
    if (!wanted(get_config(), bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_EXEC;
    fl->args[0] = at;                             /* 1: execveat */
    fl->args[1] = at ? ctx->args[0] : (__u64)-100; /* dirfd (AT_FDCWD for execve) */
    fl->args[2] = at ? ctx->args[4] : 0;          /* flags */
    save_inflight(fl);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int ub_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
    return enter_exec(ctx, 0);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int ub_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
    return enter_exec(ctx, 1);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int ub_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
    if (!wanted(get_config(), bpf_get_current_pid_tgid() >> 32))
        return 0;
    __u16 family = 0;
    const void *sa = (const void *)ctx->args[1];
    if (bpf_probe_read_user(&family, sizeof(family), sa) != 0)
        return 0;
    if (family != AF_INET && family != AF_INET6)
        return 0; /* unix sockets are local plumbing, not network activity */
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_CONNECT;
    fl->args[0] = ctx->args[0];
    fl->family = family;
    bpf_probe_read_user(&fl->port, sizeof(fl->port), sa + 2);
    if (family == AF_INET)
        bpf_probe_read_user(fl->addr, 4, sa + 4);
    else
        bpf_probe_read_user(fl->addr, 16, sa + 8);
    save_inflight(fl);
    return 0;
}

/* ------------------------------------------------------------------ syscall exit */

static __always_inline __u32 probe_header(__u64 addr, __u64 floor, __u32 pages, __u32 *delta)
{
    __u32 kind = UB_HDR_UNKNOWN;
    __u64 page = addr & ~(PAGE_SIZE - 1);

    for (__u32 k = 0; k < UB_HDR_PAGES; k++) {
        if (k >= pages)
            break;
        __u64 p = page - (__u64)k * PAGE_SIZE;
        if (p < floor || p > page)
            break;
        __u32 magic = 0;
        if (bpf_probe_read_user(&magic, sizeof(magic), (const void *)p) != 0)
            continue; /* not resident or not mapped: cannot tell */
        if (kind == UB_HDR_UNKNOWN)
            kind = UB_HDR_NONE;
        if (magic == 0x464c457f) { /* \x7fELF */
            *delta = addr - p;
            return UB_HDR_ELF;
        }
        if ((magic & 0xffff) == 0x5a4d) { /* MZ ... PE\0\0 */
            __u32 lfanew = 0, sig = 0;
            if (bpf_probe_read_user(&lfanew, 4, (const void *)(p + 0x3c)) == 0 &&
                lfanew >= 0x40 && lfanew < 0x1000 &&
                bpf_probe_read_user(&sig, 4, (const void *)(p + lfanew)) == 0 &&
                sig == 0x00004550) {
                *delta = addr - p;
                return UB_HDR_PE;
            }
        }
    }
    return kind;
}

/* Lowest address of the run of adjacent anonymous VMAs ending at vi (an allocation that a
 * loader split with mprotect), at most three VMAs down. */
static __always_inline __u64 anon_floor(struct task_struct *task, struct vma_info *vi)
{
    __u64 floor = vi->start;
    struct vma_info prev;
    for (int i = 0; i < 3; i++) {
        if (floor < PAGE_SIZE || lookup_vma(task, floor - 1, &prev) != 0)
            break;
        if (prev.end != floor || prev.file || prev.kind != UB_VMA_ANON)
            break;
        floor = prev.start;
    }
    return floor;
}

/* Returns 1 when the record may be emitted, 0 when it is suppressed; *carried is the number of
 * records of the same key suppressed since the last one emitted. */
static __always_inline int rate_ok(struct ub_config *cfg, __u32 tgid, __u32 type, __u64 caller,
                                   __u64 now, __u64 *carried)
{
    *carried = 0;
    if (!cfg || cfg->rl_burst == 0)
        return 1;
    struct rl_key key = {.tgid = tgid, .type = type, .caller = caller};
    struct rl_val *v = bpf_map_lookup_elem(&ub_ratelimit, &key);
    __u64 window = (__u64)cfg->rl_window_ms * 1000000ULL;
    if (!v) {
        struct rl_val init = {.window_start = now, .count = 1, .suppressed = 0};
        bpf_map_update_elem(&ub_ratelimit, &key, &init, BPF_ANY);
        return 1;
    }
    if (now - v->window_start >= window) {
        *carried = v->suppressed;
        v->window_start = now;
        v->count = 1;
        v->suppressed = 0;
        return 1;
    }
    if (v->count < cfg->rl_burst) {
        v->count++;
        *carried = v->suppressed;
        v->suppressed = 0;
        return 1;
    }
    __sync_fetch_and_add(&v->suppressed, 1);
    stat_add(UB_STAT_SUPPRESSED, 1);
    return 0;
}

static __always_inline void locate_callers(struct ub_event *e, struct task_struct *task)
{
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u64 ip = BPF_CORE_READ(regs, ip), sp = BPF_CORE_READ(regs, sp), ret = 0;
    struct vma_info vi;

    e->syscall_ip = ip - 2; /* `syscall` is two bytes; ip is the next instruction */
    bpf_probe_read_user(&ret, sizeof(ret), (const void *)sp);
    e->caller_ip = ret;
    if (lookup_vma(task, e->syscall_ip, &vi) == 0) {
        e->sc_kind = vi.kind;
        e->sc_vma_start = vi.start;
        e->sc_pgoff = vi.pgoff;
        if (vi.file)
            file_name(vi.file, e->sc_name);
    } else {
        stat_add(UB_STAT_VMA_FAIL, 1);
    }
    if (ret && lookup_vma(task, ret, &vi) == 0) {
        e->caller_kind = vi.kind;
        e->caller_vma_start = vi.start;
        e->caller_pgoff = vi.pgoff;
        if (vi.file)
            file_name(vi.file, e->caller_name);
    }
}

/* ------------------------------------------------------------------ user stack
 *
 * No frame pointers to rely on in user space: the stack above the syscall's return address is
 * scanned for words that are return addresses, i.e. point into executable memory right after a
 * call instruction (call rel32, call reg, call [mem]). Each is resolved to its mapping: the
 * file and offset, or anonymous memory (JIT code, or code no file backs). */

struct stack_scan {
    __u64 words[UB_SCAN_WORDS];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct stack_scan);
} ub_stack_scratch SEC(".maps");

/* the frames found for a (process, stack contents): a caller that asks again from the same
 * stack (a JIT flipping pages in a loop, a flood) costs one hash of the stack words and one
 * lookup, not a scan. Same layout as the frame_* fields of struct ub_event. */
struct frames {
    __u64 ip[UB_FRAMES];
    __u64 off[UB_FRAMES];
    __u8 kind[UB_FRAMES];
    char name[UB_FRAMES][UB_NAME_LEN];
};

struct frame_key {
    __u32 tgid;
    __u32 pad;
    __u64 hash;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct frame_key);
    __type(value, struct frames);
} ub_frame_cache SEC(".maps");

/* 1: ret follows a direct call (call rel32), 2: an indirect one (call reg / call [mem]),
 * 0: no call instruction ends right before ret */
static __always_inline int after_call(__u64 ret)
{
    __u8 b[7] = {}; /* b[i] is the byte at ret - 7 + i */
    if (bpf_probe_read_user(b, sizeof(b), (const void *)(ret - 7)) != 0)
        return 0;
    if (b[2] == 0xe8) /* call rel32 */
        return 1;
    if (b[5] == 0xff && ((b[6] & 0xf8) == 0xd0 || (b[6] & 0xf8) == 0x10))
        return 2; /* call reg / call [reg] */
    if (b[4] == 0xff && (b[5] & 0xf8) == 0x50) /* call [reg + disp8] */
        return 2;
    if (b[1] == 0xff && (b[2] == 0x15 || (b[2] & 0xf8) == 0x90))
        return 2; /* call [rip + disp32] / [reg + disp32] */
    return 0;
}

struct frame_ctx {
    struct ub_event *e;
    struct task_struct *task;
    struct stack_scan *scan;
    __u64 sp;
    __u32 n;
};

static long frame_step(__u64 i, void *data)
{
    struct frame_ctx *fc = data;
    if (fc->n >= UB_FRAMES)
        return 1;
    __u64 w = fc->scan->words[i & (UB_SCAN_WORDS - 1)];
    if (w < 0x10000 || w >= 0x800000000000ULL || (w >= fc->sp - (1ULL << 20) && w < fc->sp + (8ULL << 20)))
        return 0;
    int call = after_call(w);
    if (!call)
        return 0;
    struct vma_info vi;
    if (lookup_vma(fc->task, w, &vi) != 0 || !(vi.flags & VM_EXEC))
        return 0;
    __u32 k = fc->n & (UB_FRAMES - 1);
    struct ub_event *e = fc->e;
    e->frame_ip[k] = w;
    e->frame_kind[k] = vi.kind | (call == 2 ? UB_FRAME_INDIRECT : 0);
    if (vi.file) {
        e->frame_off[k] = w - vi.start + vi.pgoff * PAGE_SIZE;
        file_name(vi.file, e->frame_name[k]);
    } else if (vi.kind == UB_VMA_VDSO) {
        e->frame_off[k] = w - vi.start; /* the vDSO spans more than one page */
    }
    fc->n++;
    return 0;
}

static __always_inline void user_stack(struct ub_event *e, struct task_struct *task)
{
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u64 sp = BPF_CORE_READ(regs, sp);
    __u32 zero = 0;
    struct stack_scan *scan = bpf_map_lookup_elem(&ub_stack_scratch, &zero);
    if (!scan)
        return;
    if (bpf_probe_read_user(scan->words, sizeof(scan->words), (const void *)sp) != 0) {
        /* near the top of the stack: read what there is, 64 bytes at a time */
        __builtin_memset(scan->words, 0, sizeof(scan->words));
        for (int j = 0; j < UB_SCAN_WORDS / 8; j++)
            if (bpf_probe_read_user(&scan->words[j * 8], 64, (const void *)(sp + j * 64)) != 0)
                break;
    }
    __u64 h = 0xcbf29ce484222325ULL ^ sp;
    for (int j = 0; j < UB_SCAN_WORDS; j++)
        h = (h ^ scan->words[j]) * 0x100000001b3ULL;
    struct frame_key key = {.tgid = e->pid, .hash = h};
    struct frames *hit = bpf_map_lookup_elem(&ub_frame_cache, &key);
    if (hit) {
        __builtin_memcpy((void *)e->frame_ip, hit, sizeof(*hit));
        return;
    }
    struct frame_ctx fc = {.e = e, .task = task, .scan = scan, .sp = sp, .n = 0};
    bpf_loop(UB_SCAN_WORDS, frame_step, &fc, 0);
    bpf_map_update_elem(&ub_frame_cache, &key, (void *)e->frame_ip, BPF_ANY);
}

static __always_inline int exit_mem(struct trace_event_raw_sys_exit *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl)
        return 0;
    struct ub_config *cfg = get_config();
    struct task_struct *task = bpf_get_current_task_btf();
    long ret = ctx->ret;
    __u32 type = fl->type;
    __u64 addr = type == UB_MMAP ? (ret < 0 ? 0 : (__u64)ret) : fl->args[0];
    __u32 prot = (__u32)fl->args[2];
    struct vma_info vi = {};
    __u32 hdr = UB_HDR_UNKNOWN, delta = 0;
    __u64 floor = 0;

    if (ret >= 0 && lookup_vma(task, addr, &vi) == 0 && (prot & PROT_EXEC)) {
        __u32 pages = cfg ? cfg->hdr_pages : 1;
        if (vi.kind == UB_VMA_ANON) {
            floor = anon_floor(task, &vi);
        } else {
            floor = addr; /* file-backed: a header below is the file's own, not news */
            pages = 1;
        }
        hdr = probe_header(addr, floor, pages, &delta);
    }

    /* rate limit per (process, caller); a header-bearing region always goes through */
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    __u64 sp = BPF_CORE_READ(regs, sp), caller = 0, carried = 0;
    bpf_probe_read_user(&caller, sizeof(caller), (const void *)sp);
    if (hdr != UB_HDR_ELF && hdr != UB_HDR_PE &&
        !rate_ok(cfg, (__u32)(bpf_get_current_pid_tgid() >> 32), type, caller, bpf_ktime_get_ns(),
                 &carried)) {
        bpf_map_delete_elem(&ub_inflight, &tid);
        return 0;
    }

    struct ub_event *e = reserve();
    if (!e) {
        bpf_map_delete_elem(&ub_inflight, &tid);
        return 0;
    }
    e->type = type;
    e->ret = ret;
    e->addr = addr;
    e->len = fl->args[1];
    e->prot = prot;
    e->old_prot = fl->old_prot;
    e->flags = type == UB_MMAP ? (__u32)fl->args[3] : 0;
    e->fd = type == UB_MMAP ? (long long)(int)(fl->args[3] >> 32) : -1;
    e->suppressed = carried;
    e->header_kind = hdr;
    e->header_delta = delta;
    e->alloc_start = floor;
    if (vi.found) {
        e->vma_kind = vi.kind;
        e->vma_start = vi.start;
        e->vma_end = vi.end;
        e->vma_flags = vi.flags;
        e->vma_pgoff = vi.pgoff;
        if (vi.file)
            file_path(vi.file, e->path, &e->path_depth, &e->path_trunc);
    }
    if (ret < 0)
        stat_add(UB_STAT_FAILED, 1);
    fill_task(e, task);
    locate_callers(e, task);
    if (ret >= 0 && (prot & PROT_EXEC))
        user_stack(e, task);
    submit(e);
    bpf_map_delete_elem(&ub_inflight, &tid);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int ub_exit_mmap(struct trace_event_raw_sys_exit *ctx)
{
    return exit_mem(ctx);
}

SEC("tracepoint/syscalls/sys_exit_mprotect")
int ub_exit_mprotect(struct trace_event_raw_sys_exit *ctx)
{
    return exit_mem(ctx);
}

SEC("tracepoint/syscalls/sys_exit_pkey_mprotect")
int ub_exit_pkey_mprotect(struct trace_event_raw_sys_exit *ctx)
{
    return exit_mem(ctx);
}

SEC("tracepoint/syscalls/sys_exit_memfd_create")
int ub_exit_memfd_create(struct trace_event_raw_sys_exit *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl)
        return 0;
    struct ub_event *e = reserve();
    if (e) {
        struct task_struct *task = bpf_get_current_task_btf();
        e->type = UB_MEMFD_CREATE;
        e->ret = ctx->ret;
        e->fd = ctx->ret;
        e->flags = fl->args[1];
        bpf_probe_read_user_str(e->str, sizeof(e->str), (const void *)fl->args[0]);
        fill_task(e, task);
        locate_callers(e, task);
        submit(e);
    }
    bpf_map_delete_elem(&ub_inflight, &tid);
    return 0;
}

static __always_inline int exit_exec(struct trace_event_raw_sys_exit *ctx)
{
    /* Reached only when exec failed (a successful exec is reported by sched_process_exec,
     * which consumes the in-flight entry). */
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&ub_inflight, &tid);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int ub_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
    return exit_exec(ctx);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int ub_exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
    return exit_exec(ctx);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int ub_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl)
        return 0;
    struct ub_event *e = reserve();
    if (e) {
        struct task_struct *task = bpf_get_current_task_btf();
        e->type = UB_CONNECT;
        e->ret = ctx->ret;
        e->fd = (long long)fl->args[0];
        e->family = (__u8)fl->family;
        e->remote_port = __builtin_bswap16(fl->port);
        __builtin_memcpy(e->remote_addr, fl->addr, sizeof(e->remote_addr));
        fill_task(e, task);
        locate_callers(e, task);
        submit(e);
    }
    bpf_map_delete_elem(&ub_inflight, &tid);
    return 0;
}

/* ------------------------------------------------------------------ cross-process acts
 *
 * Who writes into whom, and into which mapping (the Linux side of Sysmon 8/10 and ETW-TI's
 * WRITEVM / SETTHREADCONTEXT): ptrace attach/seize/traceme, POKETEXT/POKEDATA, SETREGS and
 * SETREGSET (the new instruction pointer), process_vm_writev, opens of /proc/PID/mem for
 * writing and writes through such descriptors (the position of the write is the target
 * address: DDexec seeks its own mem file with tail/dd, then writes a stub into its text).
 * The target's mapping at the address is looked up in the target's own address space. */

#define PROC_SUPER_MAGIC 0x9fa0
#define FMODE_WRITE 0x2
#define NT_PRSTATUS 1
#define REGS_IP_OFF 128 /* offsetof(struct user_regs_struct, ip) */
#define USER_RIP_OFF 128 /* offsetof(struct user, regs.rip): regs come first */

enum { UB_W_WRITE = 0, UB_W_PWRITE = 1, UB_W_WRITEV = 2, UB_W_PWRITEV = 3 };

static __always_inline void put_vma(struct ub_event *e, struct vma_info *vi)
{
    e->vma_kind = vi->kind;
    e->vma_start = vi->start;
    e->vma_end = vi->end;
    e->vma_flags = vi->flags;
    e->vma_pgoff = vi->pgoff;
    if (vi->file)
        file_path(vi->file, e->path, &e->path_depth, &e->path_trunc);
}

/* The target of a cross-process act, resolved once per act (or per remote iovec). */
struct xtarget {
    __u64 start; /* group leader start_time */
    __u64 ip;    /* the target thread's user instruction pointer: where it resumes */
    __u32 tgid;
    __u32 ppid;
    struct vma_info vi;
};

#define UB_TRACEES 32 /* tracees of the caller searched for a namespace pid */

/* The global pid of the caller's tracee whose pid in the caller's namespace is nr, else 0. */
static __always_inline __u32 tracee_global_pid(__u32 nr, __u32 level)
{
    struct task_struct *cur = bpf_get_current_task_btf();
    if (level >= 32)
        return 0;
    __u64 upid_off = bpf_core_field_offset(struct pid, numbers) +
                     (__u64)level * bpf_core_type_size(struct upid);
    struct upid mine = {};
    if (bpf_probe_read_kernel(&mine, sizeof(mine), (void *)cur->thread_pid + upid_off) != 0)
        return 0;
    void *head = (void *)cur + bpf_core_field_offset(struct task_struct, ptraced);
    struct list_head *pos = BPF_CORE_READ(cur, ptraced.next);
    __u64 entry_off = bpf_core_field_offset(struct task_struct, ptrace_entry);
    for (int i = 0; i < UB_TRACEES; i++) {
        if (!pos || (void *)pos == head)
            break;
        struct task_struct *t = (struct task_struct *)((void *)pos - entry_off);
        struct pid *tp = BPF_CORE_READ(t, thread_pid);
        struct upid u = {};
        if (tp && BPF_CORE_READ(tp, level) >= level &&
            bpf_probe_read_kernel(&u, sizeof(u), (void *)tp + upid_off) == 0 && u.nr == (int)nr &&
            u.ns == mine.ns)
            return BPF_CORE_READ(t, pid);
        pos = BPF_CORE_READ(pos, next);
    }
    return 0;
}

/* Resolve the target named by pid (and, with want_vma, its mapping at addr). ns_local: pid is
 * as the caller names it (ptrace, process_vm_writev arguments); bpf_task_from_pid looks pids up
 * in the initial pid namespace, so for a caller inside another pid namespace (a container) the
 * pid is translated through the caller's tracees (ptrace POKE/SETREGS, and attach at its exit,
 * name one), else the target is left unresolved (tgid 0): the pid would name another task.
 * Pids the program read from the kernel (a mem file's pid, the tracer of TRACEME) are global. */
static __always_inline void resolve_target(__u32 pid, int ns_local, __u64 addr, int want_vma,
                                           struct xtarget *xt)
{
    __builtin_memset(xt, 0, sizeof(*xt));
    if (!bpf_task_from_pid || !pid)
        return;
    __u32 level = BPF_CORE_READ(bpf_get_current_task_btf(), thread_pid, level);
    if (ns_local && level != 0) {
        pid = tracee_global_pid(pid, level);
        if (!pid)
            return;
    }
    struct task_struct *t = bpf_task_from_pid((s32)pid);
    if (!t)
        return;
    xt->tgid = t->tgid;
    xt->start = BPF_CORE_READ(t, group_leader, start_time);
    xt->ppid = BPF_CORE_READ(t, real_parent, tgid);
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
    if (regs)
        xt->ip = BPF_CORE_READ(regs, ip);
    if (want_vma)
        lookup_vma(t, addr, &xt->vi);
    bpf_task_release(t);
}

static __always_inline void put_target(struct ub_event *e, __u32 pid, struct xtarget *xt)
{
    e->target_tid = pid;
    e->target_pid = xt->tgid;
    e->target_start = xt->start;
    e->target_ppid = xt->ppid;
    if (!xt->tgid)
        return;
    e->target_ip = xt->ip;
    if (xt->vi.found)
        put_vma(e, &xt->vi);
}

static __always_inline void fill_target(struct ub_event *e, __u32 pid, int ns_local)
{
    struct xtarget xt;
    resolve_target(pid, ns_local, 0, 0, &xt);
    put_target(e, pid, &xt);
}

/* The pid whose memory descriptor fd is of task (/proc/PID/mem opened for writing), else 0;
 * *pos gets the descriptor's file position. */
static __always_inline __u32 mem_target(struct task_struct *task, long fd, __u64 *pos)
{
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    unsigned int max = BPF_CORE_READ(fdt, max_fds);
    if (fd < 0 || fd >= max)
        return 0;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) != 0 || !f)
        return 0;
    struct inode *ino = BPF_CORE_READ(f, f_inode);
    if (BPF_CORE_READ(ino, i_sb, s_magic) != PROC_SUPER_MAGIC)
        return 0;
    if (!(BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
        return 0;
    char name[4] = {};
    bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(f, f_path.dentry, d_name.name));
    if (name[0] != 'm' || name[1] != 'e' || name[2] != 'm' || name[3] != 0)
        return 0;
    *pos = BPF_CORE_READ(f, f_pos);
    struct proc_inode *pi =
        (struct proc_inode *)((void *)ino - bpf_core_field_offset(struct proc_inode, vfs_inode));
    struct pid *p = BPF_CORE_READ(pi, pid);
    return BPF_CORE_READ(p, numbers[0].nr);
}

/* record mode: an act of an untracked process on a tracked one is recorded too */
static __always_inline int wanted_xproc(struct ub_config *cfg, __u32 tgid, __u32 target)
{
    if (wanted(cfg, tgid))
        return 1;
    if (!cfg || tgid == cfg->self_tgid || !cfg->filter_tree || !target)
        return 0;
    return bpf_map_lookup_elem(&ub_tracked, &target) != 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int ub_enter_ptrace(struct trace_event_raw_sys_enter *ctx)
{
    __u64 req = ctx->args[0], addr = ctx->args[2], data = ctx->args[3];
    __u32 pid = (__u32)ctx->args[1];
    if (req != UB_PTRACE_TRACEME && req != UB_PTRACE_POKETEXT && req != UB_PTRACE_POKEDATA &&
        req != UB_PTRACE_SETREGS && req != UB_PTRACE_ATTACH && req != UB_PTRACE_SETREGSET &&
        req != UB_PTRACE_SEIZE && !(req == UB_PTRACE_POKEUSER && addr == USER_RIP_OFF))
        return 0; /* (POKEUSER elsewhere: debug registers, i.e. hardware breakpoints) */
    struct task_struct *task = bpf_get_current_task_btf();
    if (req == UB_PTRACE_TRACEME)
        pid = BPF_CORE_READ(task, real_parent, tgid);
    if (!wanted_xproc(get_config(), bpf_get_current_pid_tgid() >> 32, pid))
        return 0;
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    __u64 ip = 0;
    if (req == UB_PTRACE_POKEUSER) {
        ip = data; /* the new regs.rip */
    } else if (req == UB_PTRACE_SETREGS) {
        bpf_probe_read_user(&ip, sizeof(ip), (const void *)(data + REGS_IP_OFF));
    } else if (req == UB_PTRACE_SETREGSET) {
        __u64 iov[2] = {};
        if (addr == NT_PRSTATUS && bpf_probe_read_user(iov, sizeof(iov), (const void *)data) == 0 &&
            iov[1] >= REGS_IP_OFF + 8)
            bpf_probe_read_user(&ip, sizeof(ip), (const void *)(iov[0] + REGS_IP_OFF));
    }
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_PTRACE;
    fl->args[0] = req;
    fl->args[1] = pid;
    int setctx = req == UB_PTRACE_SETREGS || req == UB_PTRACE_SETREGSET ||
                 req == UB_PTRACE_POKEUSER;
    fl->args[2] = setctx ? ip : addr;
    fl->args[3] = (req == UB_PTRACE_POKETEXT || req == UB_PTRACE_POKEDATA) ? 8 : 0;
    fl->have_old = req != UB_PTRACE_TRACEME; /* the pid is the caller's: namespace-local */
    save_inflight(fl);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int ub_enter_process_vm_writev(struct trace_event_raw_sys_enter *ctx)
{
    __u32 pid = (__u32)ctx->args[0];
    if (!wanted_xproc(get_config(), bpf_get_current_pid_tgid() >> 32, pid))
        return 0;
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_VM_WRITE;
    fl->args[1] = pid;
    fl->args[2] = ctx->args[3]; /* the remote iovecs: read at exit, one row each */
    fl->args[3] = ctx->args[4]; /* their number */
    save_inflight(fl);
    return 0;
}

/* opens: every open for writing is confirmed at exit through the descriptor it returned (a
 * procfs file named "mem": /proc/PID/mem, /proc/PID/task/TID/mem), whatever path led there —
 * relative to any directory, through symlinks, "//proc", "../proc", a chdir into /proc */
static __always_inline int enter_open(__u64 flags)
{
    if (!(flags & 3)) /* O_WRONLY | O_RDWR */
        return 0;
    if (!wanted(get_config(), bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_MEM_OPEN;
    fl->args[0] = flags;
    save_inflight(fl);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int ub_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
    return enter_open(ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int ub_enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
    __u64 flags = 0; /* struct open_how starts with the flags */
    bpf_probe_read_user(&flags, sizeof(flags), (const void *)ctx->args[2]);
    return enter_open(flags);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int ub_enter_creat(struct trace_event_raw_sys_enter *ctx)
{
    return enter_open(1); /* O_CREAT | O_WRONLY | O_TRUNC */
}

SEC("tracepoint/syscalls/sys_enter_open")
int ub_enter_open(struct trace_event_raw_sys_enter *ctx)
{
    return enter_open(ctx->args[1]);
}

static __always_inline int exit_open(struct trace_event_raw_sys_exit *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl || fl->type != UB_MEM_OPEN)
        return 0;
    __u64 flags = fl->args[0];
    bpf_map_delete_elem(&ub_inflight, &tid);
    long ret = ctx->ret;
    if (ret < 0)
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    __u64 pos = 0;
    __u32 target = mem_target(task, ret, &pos);
    if (!target)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u8 one = 1;
    bpf_map_update_elem(&ub_mem_writers, &tgid, &one, BPF_ANY);
    struct ub_event *e = reserve();
    if (!e)
        return 0;
    e->type = UB_MEM_OPEN;
    e->ret = ret;
    e->fd = ret;
    e->flags = flags;
    fill_task(e, task);
    fill_target(e, target, 0);
    locate_callers(e, task);
    submit(e);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int ub_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
    return exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_open")
int ub_exit_open(struct trace_event_raw_sys_exit *ctx)
{
    return exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int ub_exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
    return exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int ub_exit_creat(struct trace_event_raw_sys_exit *ctx)
{
    return exit_open(ctx);
}

static __always_inline int enter_write(struct trace_event_raw_sys_enter *ctx, __u32 how)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!bpf_map_lookup_elem(&ub_mem_writers, &tgid)) /* the common case: one hash miss */
        return 0;
    if (!wanted(get_config(), tgid))
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    __u64 pos = 0;
    __u32 target = mem_target(task, (long)ctx->args[0], &pos);
    if (!target)
        return 0;
    if (how == UB_W_PWRITE || how == UB_W_PWRITEV)
        pos = ctx->args[3];
    struct inflight *fl = new_inflight();
    if (!fl)
        return 0;
    fl->ts = bpf_ktime_get_ns();
    fl->type = UB_MEM_WRITE;
    fl->args[0] = ctx->args[0];
    fl->args[1] = target;
    fl->args[2] = pos;
    fl->args[3] = how;
    save_inflight(fl);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int ub_enter_write(struct trace_event_raw_sys_enter *ctx)
{
    return enter_write(ctx, UB_W_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int ub_enter_pwrite64(struct trace_event_raw_sys_enter *ctx)
{
    return enter_write(ctx, UB_W_PWRITE);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int ub_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
    return enter_write(ctx, UB_W_WRITEV);
}

SEC("tracepoint/syscalls/sys_enter_pwritev")
int ub_enter_pwritev(struct trace_event_raw_sys_enter *ctx)
{
    return enter_write(ctx, UB_W_PWRITEV);
}

/* one record of a cross-process act; NULL when the ring is full */
static __always_inline struct ub_event *xproc_record(__u32 type, long ret, __u64 carried)
{
    struct ub_event *e = reserve();
    if (!e)
        return 0;
    e->type = type;
    e->ret = ret;
    e->suppressed = carried;
    e->fd = -1;
    if (ret < 0)
        stat_add(UB_STAT_FAILED, 1);
    return e;
}

/* exit of ptrace and mem writes: one record with the target's mapping. The rate limit per
 * (actor, act, target) never applies to a write into executable memory: flooding POKEs into
 * data must not hide the one into code that follows. */
static __always_inline int exit_xproc(struct trace_event_raw_sys_exit *ctx, __u32 want)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl || fl->type != want)
        return 0;
    struct ub_config *cfg = get_config();
    __u32 type = fl->type;
    __u64 a0 = fl->args[0], a1 = fl->args[1], a2 = fl->args[2], a3 = fl->args[3];
    int ns_local = type == UB_PTRACE && fl->have_old;
    bpf_map_delete_elem(&ub_inflight, &tid);
    long ret = ctx->ret;
    __u64 addr = a2, len = 0;
    int want_vma = 1, is_write = 1;
    if (type == UB_PTRACE) {
        len = a3;
        is_write = a0 == UB_PTRACE_POKETEXT || a0 == UB_PTRACE_POKEDATA;
        want_vma = is_write || a0 == UB_PTRACE_SETREGS || a0 == UB_PTRACE_SETREGSET ||
                   a0 == UB_PTRACE_POKEUSER;
    } else { /* UB_MEM_WRITE */
        len = ret > 0 ? ret : 0;
    }
    struct xtarget xt;
    resolve_target((__u32)a1, ns_local, addr, want_vma && addr, &xt);
    int into_code = is_write && xt.vi.found && (xt.vi.flags & VM_EXEC);
    __u64 carried = 0;
    if (!into_code &&
        !rate_ok(cfg, (__u32)(bpf_get_current_pid_tgid() >> 32), type, (a1 << 32) | (a0 & 0xffff),
                 bpf_ktime_get_ns(), &carried))
        return 0;
    struct ub_event *e = xproc_record(type, ret, carried);
    if (!e)
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    if (type == UB_PTRACE) {
        e->flags = a0; /* the request */
    } else {
        e->fd = (long long)a0;
        e->flags = a3;
    }
    e->addr = addr;
    e->len = len;
    fill_task(e, task);
    put_target(e, (__u32)a1, &xt);
    locate_callers(e, task);
    submit(e);
    return 0;
}

/* process_vm_writev: a record per remote iovec (the bytes written into it), for the first
 * UB_VM_IOV_ROWS and, beyond them up to UB_VM_IOV_MAX, for each one in executable memory:
 * a decoy iovec in data first must not hide the one into code after it, and iovecs scattered
 * over the target are separate writes, not one run */
struct iov_walk {
    __u64 riov, cnt, left, pid;
    long ret;
    __u32 actor;
    __u32 pad;
};

/* One remote iovec's record. A global function: the verifier checks it once, on its own,
 * instead of inside every iteration of the bpf_loop below (inlined there, the stack walk and the
 * target lookup made the loop's verification pass the kernel's one-million-instruction limit
 * on some kernels). Returns 1 to stop the walk. */
__noinline int vm_iov_record(struct iov_walk *w, __u64 i, __u64 addr, __u64 n)
{
    if (!w)
        return 1;
    struct xtarget xt;
    resolve_target((__u32)w->pid, 1, addr, 1, &xt);
    int into_code = xt.vi.found && (xt.vi.flags & VM_EXEC);
    if (i >= UB_VM_IOV_ROWS && !into_code)
        return 0;
    __u64 carried = 0;
    if (!into_code && !rate_ok(get_config(), w->actor, UB_VM_WRITE, w->pid << 32,
                               bpf_ktime_get_ns(), &carried))
        return 0;
    struct ub_event *e = xproc_record(UB_VM_WRITE, w->ret, carried);
    if (!e)
        return 1;
    struct task_struct *task = bpf_get_current_task_btf();
    e->flags = w->cnt;
    e->addr = addr;
    e->len = n;
    fill_task(e, task);
    put_target(e, (__u32)w->pid, &xt);
    locate_callers(e, task);
    submit(e);
    return w->ret < 0 ? 1 : 0; /* a failed call: one record says so */
}

static long vm_iov_step(__u64 i, void *data)
{
    struct iov_walk *w = data;
    if (i >= w->cnt)
        return 1;
    __u64 iov[2] = {};
    if (bpf_probe_read_user(iov, sizeof(iov), (const void *)(w->riov + i * 16)) != 0)
        return 1;
    __u64 n = iov[1] < w->left ? iov[1] : w->left;
    w->left -= n;
    if (w->ret >= 0 && n == 0)
        return w->left == 0 ? 1 : 0; /* nothing written there (empty iovec, or past the end) */
    return vm_iov_record(w, i, iov[0], n) ? 1 : 0;
}

static __always_inline int exit_vm_write(struct trace_event_raw_sys_exit *ctx)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    if (!fl || fl->type != UB_VM_WRITE)
        return 0;
    struct iov_walk w = {
        .riov = fl->args[2],
        .cnt = fl->args[3] < UB_VM_IOV_MAX ? fl->args[3] : UB_VM_IOV_MAX,
        .pid = fl->args[1],
        .ret = ctx->ret,
        .actor = (__u32)(bpf_get_current_pid_tgid() >> 32),
    };
    w.left = ctx->ret > 0 ? ctx->ret : 0;
    bpf_map_delete_elem(&ub_inflight, &tid);
    bpf_loop(UB_VM_IOV_MAX, vm_iov_step, &w, 0);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int ub_exit_ptrace(struct trace_event_raw_sys_exit *ctx)
{
    return exit_xproc(ctx, UB_PTRACE);
}

SEC("tracepoint/syscalls/sys_exit_process_vm_writev")
int ub_exit_process_vm_writev(struct trace_event_raw_sys_exit *ctx)
{
    return exit_vm_write(ctx);
}

SEC("tracepoint/syscalls/sys_exit_write")
int ub_exit_write(struct trace_event_raw_sys_exit *ctx)
{
    return exit_xproc(ctx, UB_MEM_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_pwrite64")
int ub_exit_pwrite64(struct trace_event_raw_sys_exit *ctx)
{
    return exit_xproc(ctx, UB_MEM_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int ub_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
    return exit_xproc(ctx, UB_MEM_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_pwritev")
int ub_exit_pwritev(struct trace_event_raw_sys_exit *ctx)
{
    return exit_xproc(ctx, UB_MEM_WRITE);
}

/* ------------------------------------------------------------------ process lifecycle */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ub_fork, struct task_struct *parent, struct task_struct *child)
{
    if (child->pid != child->tgid)
        return 0; /* a thread */
    struct ub_config *cfg = get_config();
    __u32 ptgid = parent->tgid, ctgid = child->tgid;
    if (!cfg)
        return 0; /* (children of the sensor itself are recorded: tests run controls so) */
    if (cfg->filter_tree) {
        if (!bpf_map_lookup_elem(&ub_tracked, &ptgid))
            return 0;
        __u8 one = 1;
        bpf_map_update_elem(&ub_tracked, &ctgid, &one, BPF_ANY);
    }
    if (bpf_map_lookup_elem(&ub_mem_writers, &ptgid)) {
        __u8 one = 1; /* the child inherits the parent's descriptors */
        bpf_map_update_elem(&ub_mem_writers, &ctgid, &one, BPF_ANY);
    }
    struct ub_event *e = reserve();
    if (!e)
        return 0;
    e->type = UB_FORK;
    fill_task(e, child);
    e->ppid = ptgid; /* real_parent of the child may not be set up for CLONE_PARENT */
    submit(e);
    return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ub_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct ub_config *cfg = get_config();
    if (!wanted(cfg, p->tgid)) {
        bpf_map_delete_elem(&ub_inflight, &tid);
        return 0;
    }
    struct ub_event *e = reserve();
    if (!e) {
        bpf_map_delete_elem(&ub_inflight, &tid);
        return 0;
    }
    e->type = UB_EXEC;
    e->fd = -100;
    __u32 exec_tgid = p->tgid;
    bpf_map_delete_elem(&ub_exe_cache, &exec_tgid);
    struct inflight *fl = bpf_map_lookup_elem(&ub_inflight, &tid);
    __u32 old = (__u32)old_pid;
    if (!fl)
        fl = bpf_map_lookup_elem(&ub_inflight, &old);
    if (fl && fl->type == UB_EXEC) {
        e->flags = fl->args[2];
        e->fd = (long long)(int)fl->args[1];
        e->len = fl->args[0]; /* 1: execveat, 0: execve */
    }
    /* the new command line: the kernel has just written it to the new stack */
    __u64 a0 = BPF_CORE_READ(p, mm, arg_start), a1 = BPF_CORE_READ(p, mm, arg_end);
    __u64 alen = a1 > a0 ? a1 - a0 : 0;
    if (alen > UB_STR_LEN - 1)
        alen = UB_STR_LEN - 1;
    e->addr = alen;
    if (alen)
        bpf_probe_read_user(e->str, alen & (UB_STR_LEN - 1), (const void *)a0);
    __u64 file = (__u64)BPF_CORE_READ(bprm, file);
    if (file)
        file_path(file, e->path, &e->path_depth, &e->path_trunc);
    fill_task(e, p); /* the registers already point at the new image: no caller */
    submit(e);
    bpf_map_delete_elem(&ub_inflight, &tid);
    if (old != tid)
        bpf_map_delete_elem(&ub_inflight, &old);
    return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ub_exit, struct task_struct *p)
{
    /* the last thread out: do_exit has already counted it off signal->live (portable to
     * kernels whose tracepoint has no group_dead argument) */
    int group_dead = BPF_CORE_READ(p, signal, live.counter) == 0;
    __u32 tgid = p->tgid;
    struct ub_config *cfg = get_config();
    if (!group_dead || !wanted(cfg, tgid))
        return 0;
    struct ub_event *e = reserve();
    if (e) {
        e->type = UB_EXIT;
        e->ret = p->exit_code;
        fill_task(e, p);
        submit(e);
    }
    bpf_map_delete_elem(&ub_exe_cache, &tgid);
    bpf_map_delete_elem(&ub_mem_writers, &tgid);
    /* (frame cache entries of the process age out of the LRU map) */
    if (cfg && cfg->filter_tree)
        bpf_map_delete_elem(&ub_tracked, &tgid);
    return 0;
}
