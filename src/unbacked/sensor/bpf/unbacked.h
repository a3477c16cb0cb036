/* Shared layout of the records the eBPF program writes to its ring buffer.
 *
 * Every record has the same fixed size, so user space can view a contiguous run of the ring
 * buffer as one numpy structured array and decode it without a Python object per event.
 * unbacked/sensor/layout.py mirrors this struct; tests pin the two against each other. */
#ifndef UNBACKED_BPF_H
#define UNBACKED_BPF_H

#define UB_PATH_COMPS 8 /* path components kept per file, innermost first */
#define UB_COMP_LEN 32  /* bytes per path component (NUL-terminated, truncated) */
#define UB_NAME_LEN 32
#define UB_STR_LEN 128
#define UB_HDR_PAGES 16 /* pages probed at and below a region for an ELF/PE header */
#define UB_FRAMES 8       /* user stack frames kept on exec-memory events */
#define UB_SCAN_WORDS 64  /* stack words scanned for return addresses (512 bytes) */
#define UB_FRAME_INDIRECT 0x80 /* frame_kind flag: reached by an indirect call */
#define UB_VM_IOV_ROWS 16   /* process_vm_writev: a row per remote iovec for the first 16 ... */
#define UB_VM_IOV_MAX 1024  /* ... and, up to UIO_MAXIOV, for every one in executable memory */

enum ub_type {
    UB_MMAP = 1,
    UB_MPROTECT = 2,
    UB_PKEY_MPROTECT = 3,
    UB_MEMFD_CREATE = 4,
    UB_EXEC = 5, /* sched_process_exec, with the execve/execveat that caused it */
    UB_CONNECT = 6,
    UB_FORK = 7, /* a new process (not a thread) */
    UB_EXIT = 8, /* the last thread of a process exited */
    /* cross-process and self-modification acts (record layout v2) */
    UB_PTRACE = 9,    /* ptrace ATTACH/SEIZE/TRACEME, POKETEXT/POKEDATA, SETREGS/SETREGSET */
    UB_VM_WRITE = 10, /* process_vm_writev */
    UB_MEM_OPEN = 11, /* open of /proc/PID/mem (or /proc/self/mem) for writing */
    UB_MEM_WRITE = 12, /* write/pwrite64/writev/pwritev through such a descriptor */
};

/* ptrace requests the sensor records (x86-64 numbers) */
#define UB_PTRACE_TRACEME 0
#define UB_PTRACE_POKETEXT 4
#define UB_PTRACE_POKEDATA 5
#define UB_PTRACE_POKEUSER 6 /* recorded only at the offset of regs.rip: a new instruction pointer */
#define UB_PTRACE_SETREGS 13
#define UB_PTRACE_ATTACH 16
#define UB_PTRACE_SETREGSET 0x4205
#define UB_PTRACE_SEIZE 0x4206

enum ub_vma_kind {
    UB_VMA_UNKNOWN = 0, /* no VMA at the address, or the lookup failed */
    UB_VMA_ANON = 1,
    UB_VMA_FILE = 2,
    UB_VMA_STACK = 3,
    UB_VMA_HEAP = 4,
    UB_VMA_VDSO = 5,
};

enum ub_header {
    UB_HDR_UNKNOWN = 0, /* not probed, or no probed page was readable */
    UB_HDR_NONE = 1,
    UB_HDR_ELF = 2,
    UB_HDR_PE = 3,
};

/* stats map slots (per CPU) */
enum ub_stat {
    UB_STAT_EMITTED = 0,
    UB_STAT_LOST = 1,       /* ring buffer full: the record was dropped */
    UB_STAT_SUPPRESSED = 2, /* rate-limited per (process, caller); counted in a later record */
    UB_STAT_INFLIGHT_FULL = 3,
    UB_STAT_VMA_FAIL = 4,
    UB_STAT_FILTERED = 5, /* syscalls seen and filtered (no PROT_EXEC, untracked process) */
    UB_STAT_FAILED = 6,   /* syscalls that returned an error (emitted, ret < 0) */
    UB_STAT_MAX = 8,
};

struct ub_config {
    unsigned int self_tgid;   /* the sensor itself: never recorded */
    unsigned int filter_tree; /* 1: only processes in the tracked map (record one command) */
    unsigned int rl_burst;    /* events per (process, caller) and window before suppression; 0 off */
    unsigned int rl_window_ms;
    unsigned int hdr_pages;   /* header probe depth in pages, <= UB_HDR_PAGES */
    unsigned int pad;
};

struct ub_event {
    unsigned long long ts;         /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
    unsigned long long seq;        /* global sequence number: gaps mean lost records */
    unsigned long long proc_start; /* group leader start_time (monotonic ns) */
    unsigned long long parent_start;
    unsigned long long addr; /* region start (mmap: the returned address) */
    unsigned long long len;
    unsigned long long flags; /* mmap flags, memfd flags, execveat flags */
    long long fd;
    long long ret;                 /* syscall return value (exit code for UB_EXIT) */
    unsigned long long syscall_ip; /* address of the syscall instruction */
    unsigned long long caller_ip;  /* return address on top of the user stack */
    unsigned long long sc_vma_start, sc_pgoff;
    unsigned long long caller_vma_start, caller_pgoff;
    unsigned long long vma_start, vma_end, vma_flags, vma_pgoff;
    unsigned long long alloc_start; /* start of the run of adjacent anonymous VMAs */
    unsigned long long suppressed;  /* records of this (process, caller) suppressed before this */
    unsigned int type;
    unsigned int pid; /* tgid */
    unsigned int tid;
    unsigned int ppid;
    unsigned int uid;
    unsigned int prot;
    unsigned int old_prot;
    unsigned int header_kind;
    unsigned int header_delta; /* bytes from the header to addr */
    unsigned char vma_kind, sc_kind, caller_kind, exe_depth;
    unsigned char path_depth, exe_trunc, path_trunc, family;
    unsigned short remote_port;
    unsigned short pad16;
    unsigned int pad32;
    unsigned char remote_addr[16];
    char comm[16];
    char sc_name[UB_NAME_LEN];     /* basename of the file behind the syscall instruction */
    char caller_name[UB_NAME_LEN]; /* basename of the file behind the return address */
    char str[UB_STR_LEN];          /* memfd name; exec: argv (NUL-separated, truncated) */
    char exe[UB_PATH_COMPS][UB_COMP_LEN];  /* executable path, innermost component first */
    char path[UB_PATH_COMPS][UB_COMP_LEN]; /* backing file of the target VMA / exec'd file */
    /* v2: file identity of the executable, and the target of a cross-process act */
    unsigned long long exe_ino;      /* inode of mm->exe_file */
    unsigned long long target_start; /* target group leader start_time (monotonic ns) */
    unsigned int exe_dev;            /* device of mm->exe_file (kernel dev_t) */
    unsigned int target_pid;         /* target tgid (0: none, or not found) */
    unsigned int target_tid;         /* target thread as named by the call */
    unsigned int target_ppid;        /* target's parent tgid (is the target the actor's child?) */
    /* v2: user stack of an exec-memory event, innermost first (see user_stack()) */
    unsigned long long frame_ip[UB_FRAMES];
    unsigned long long frame_off[UB_FRAMES]; /* file offset (file-backed frames) */
    unsigned char frame_kind[UB_FRAMES];     /* ub_vma_kind of the mapping | UB_FRAME_INDIRECT */
    char frame_name[UB_FRAMES][UB_NAME_LEN]; /* basename of the frame's file */
    /* v3: cross-process writes: the target thread's instruction pointer (where it resumes) */
    unsigned long long target_ip;
};

#endif
