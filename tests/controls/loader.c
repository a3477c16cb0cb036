/* Positive control: a reflective ELF loader (benign payload, our own code).
 *
 * It maps the payload shared object that is embedded in its own .rodata into anonymous memory,
 * segment by segment, applies its relocations and calls its entry point, which returns 42. No
 * file backs the loaded code: that is exactly what unbacked exists to see.
 *
 * Modes (argv[1]):
 *   wx       one RW anonymous mapping, then mprotect each PT_LOAD to R / R-X / RW (W^X loader)
 *   rwx      one RWX anonymous mapping (the crude loader)
 *   syscall  like wx, but every mmap/mprotect of the payload is issued by a raw `syscall` stub
 *            that itself lives in anonymous executable memory, reached by a call from inside
 *            that stub: the syscall instruction and the caller's return address are unbacked
 *   jit      mimics a JIT: reserve 128 MiB PROT_NONE, carve a 64 KiB-aligned chunk RW, load the
 *            image there, flip the whole chunk R-X (sizes and alignment of a JIT code space)
 * Options: --connect PORT  after loading, connect() to 127.0.0.1:PORT (refusal is fine)
 *
 * After the act it prints one line `READY {json}` (pid, mode, executable regions, result) and
 * sleeps until stdin closes, so a sensor or a memory scanner can inspect it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <elf.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PAYLOAD_PATH
#error "build with -DPAYLOAD_PATH='\"/abs/path/payload.so\"'"
#endif

__asm__(".section .rodata\n"
        ".balign 4096\n"
        ".global payload_image\n"
        "payload_image:\n"
        ".incbin \"" PAYLOAD_PATH "\"\n"
        ".global payload_image_end\n"
        "payload_image_end:\n"
        ".previous\n");
extern const unsigned char payload_image[], payload_image_end[];

#define PAGE 4096UL
#define ALIGN_DOWN(x, a) ((x) & ~((a)-1))
#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((a)-1))

typedef long (*sys7_fn)(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

struct region {
    uintptr_t base;
    size_t size;
    const char *prot;
};

static struct region regions[16];
static int n_regions;
static sys7_fn raw_syscall; /* set in syscall mode */

static void die(const char *what)
{
    fprintf(stderr, "loader: %s\n", what);
    exit(1);
}

static void note_region(uintptr_t base, size_t size, const char *prot)
{
    if (n_regions < (int)(sizeof regions / sizeof regions[0]))
        regions[n_regions++] = (struct region){base, size, prot};
}

static void *do_mmap(void *addr, size_t len, int prot, int flags)
{
    if (raw_syscall) {
        long r = raw_syscall(SYS_mmap, (long)addr, (long)len, prot, flags, -1, 0);
        return (r < 0 && r > -4096) ? MAP_FAILED : (void *)r;
    }
    return mmap(addr, len, prot, flags, -1, 0);
}

static int do_mprotect(void *addr, size_t len, int prot)
{
    if (raw_syscall)
        return (int)raw_syscall(SYS_mprotect, (long)addr, (long)len, prot, 0, 0, 0);
    return mprotect(addr, len, prot);
}

/* A raw-syscall stub: outer `call inner; ret`, inner shuffles the SysV arguments into the
 * syscall registers and executes `syscall`. Calling through `outer` puts a return address that
 * points into the stub itself on top of the stack when the syscall instruction runs. */
static const unsigned char stub_code[] = {
    0xe8, 0x01, 0x00, 0x00, 0x00, /* call inner (+1) */
    0xc3,                         /* ret */
    0x48, 0x89, 0xf8,             /* inner: mov rax, rdi */
    0x48, 0x89, 0xf7,             /* mov rdi, rsi */
    0x48, 0x89, 0xd6,             /* mov rsi, rdx */
    0x48, 0x89, 0xca,             /* mov rdx, rcx */
    0x4d, 0x89, 0xc2,             /* mov r10, r8 */
    0x4d, 0x89, 0xc8,             /* mov r8, r9 */
    0x4c, 0x8b, 0x4c, 0x24, 0x10, /* mov r9, [rsp+16] */
    0x0f, 0x05,                   /* syscall */
    0xc3,                         /* ret */
};

static void make_syscall_stub(void)
{
    void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap stub");
    memcpy(p, stub_code, sizeof stub_code);
    if (mprotect(p, PAGE, PROT_READ | PROT_EXEC) != 0)
        die("mprotect stub");
    note_region((uintptr_t)p, PAGE, "r-x");
    raw_syscall = (sys7_fn)p;
}

static int seg_prot(uint32_t pf)
{
    return ((pf & PF_R) ? PROT_READ : 0) | ((pf & PF_W) ? PROT_WRITE : 0) |
           ((pf & PF_X) ? PROT_EXEC : 0);
}

static const char *prot_str(int prot)
{
    static const char *names[] = {"---", "r--", "-w-", "rw-", "--x", "r-x", "-wx", "rwx"};
    return names[prot & 7];
}

/* Copy PT_LOAD segments of the embedded image to base (already writable), zero .bss. */
static void copy_segments(const Elf64_Ehdr *eh, unsigned char *base, uintptr_t lo)
{
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(payload_image + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        unsigned char *dst = base + (ph[i].p_vaddr - lo);
        memcpy(dst, payload_image + ph[i].p_offset, ph[i].p_filesz);
        memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
    }
}

/* Apply R_X86_64_RELATIVE relocations from PT_DYNAMIC; anything else is a build error. */
static void relocate(const Elf64_Ehdr *eh, unsigned char *base, uintptr_t lo)
{
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(payload_image + eh->e_phoff);
    const Elf64_Dyn *dyn = NULL;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_DYNAMIC)
            dyn = (const Elf64_Dyn *)(base + (ph[i].p_vaddr - lo));
    if (!dyn)
        return;
    uintptr_t rela = 0;
    size_t relasz = 0, relaent = sizeof(Elf64_Rela);
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_RELA)
            rela = dyn->d_un.d_ptr;
        else if (dyn->d_tag == DT_RELASZ)
            relasz = dyn->d_un.d_val;
        else if (dyn->d_tag == DT_RELAENT)
            relaent = dyn->d_un.d_val;
    }
    uintptr_t delta = (uintptr_t)base - lo;
    for (size_t off = 0; rela && off < relasz; off += relaent) {
        const Elf64_Rela *r = (const Elf64_Rela *)(base + (rela - lo) + off);
        if (ELF64_R_TYPE(r->r_info) != R_X86_64_RELATIVE)
            die("unsupported relocation in payload");
        *(uint64_t *)(base + (r->r_offset - lo)) = delta + r->r_addend;
    }
}

static uintptr_t image_span(const Elf64_Ehdr *eh, uintptr_t *lo_out)
{
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(payload_image + eh->e_phoff);
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        if (ph[i].p_vaddr < lo)
            lo = ph[i].p_vaddr;
        if (ph[i].p_vaddr + ph[i].p_memsz > hi)
            hi = ph[i].p_vaddr + ph[i].p_memsz;
    }
    lo = ALIGN_DOWN(lo, PAGE);
    *lo_out = lo;
    return ALIGN_UP(hi - lo, PAGE);
}

static unsigned char *load_segmented(const Elf64_Ehdr *eh, uintptr_t *lo)
{
    size_t span = image_span(eh, lo);
    unsigned char *base =
        do_mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    if (base == MAP_FAILED)
        die("mmap image");
    copy_segments(eh, base, *lo);
    relocate(eh, base, *lo);
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(payload_image + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD)
            continue;
        uintptr_t s = ALIGN_DOWN(ph[i].p_vaddr - *lo, PAGE);
        uintptr_t e = ALIGN_UP(ph[i].p_vaddr - *lo + ph[i].p_memsz, PAGE);
        int prot = seg_prot(ph[i].p_flags);
        if (do_mprotect(base + s, e - s, prot) != 0)
            die("mprotect segment");
        if (prot & PROT_EXEC)
            note_region((uintptr_t)base + s, e - s, prot_str(prot));
    }
    return base;
}

static unsigned char *load_rwx(const Elf64_Ehdr *eh, uintptr_t *lo)
{
    size_t span = image_span(eh, lo);
    unsigned char *base = mmap(NULL, span, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        die("mmap rwx");
    copy_segments(eh, base, *lo);
    relocate(eh, base, *lo);
    note_region((uintptr_t)base, span, "rwx");
    return base;
}

static unsigned char *load_jitlike(const Elf64_Ehdr *eh, uintptr_t *lo)
{
    const size_t reserve = 128UL << 20, chunk_align = 64UL << 10;
    size_t span = image_span(eh, lo);
    unsigned char *space = mmap(NULL, reserve, PROT_NONE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (space == MAP_FAILED)
        die("reserve");
    /* a chunk a few 256 KiB pages in, like a code-space page of a JIT */
    unsigned char *base = (unsigned char *)ALIGN_UP((uintptr_t)space + (3UL << 18), chunk_align);
    size_t len = ALIGN_UP(span, chunk_align);
    if (mprotect(base, len, PROT_READ | PROT_WRITE) != 0)
        die("carve");
    copy_segments(eh, base, *lo);
    relocate(eh, base, *lo);
    if (mprotect(base, len, PROT_READ | PROT_EXEC) != 0)
        die("flip");
    note_region((uintptr_t)base, len, "r-x");
    return base;
}

static void connect_local(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)connect(s, (struct sockaddr *)&sa, sizeof sa);
    close(s);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "wx";
    int port = 0;
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], "--connect") == 0)
            port = atoi(argv[i + 1]);

    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)payload_image;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_machine != EM_X86_64)
        die("embedded payload is not an x86-64 ELF");

    uintptr_t lo = 0;
    unsigned char *base;
    if (strcmp(mode, "wx") == 0) {
        base = load_segmented(eh, &lo);
    } else if (strcmp(mode, "rwx") == 0) {
        base = load_rwx(eh, &lo);
    } else if (strcmp(mode, "syscall") == 0) {
        make_syscall_stub();
        base = load_segmented(eh, &lo);
    } else if (strcmp(mode, "jit") == 0) {
        base = load_jitlike(eh, &lo);
    } else {
        fprintf(stderr, "usage: %s wx|rwx|syscall|jit [--connect PORT]\n", argv[0]);
        return 2;
    }
    int (*entry)(void) = (int (*)(void))(base + (eh->e_entry - lo));
    int result = entry();
    if (result != 42)
        die("payload returned a wrong value: relocation or mapping failed");
    if (port > 0)
        connect_local(port);

    printf("READY {\"pid\": %d, \"mode\": \"%s\", \"base\": %lu, \"entry\": %lu, \"regions\": [",
           (int)getpid(), mode, (unsigned long)base, (unsigned long)entry);
    for (int i = 0; i < n_regions; i++)
        printf("%s{\"base\": %lu, \"size\": %zu, \"prot\": \"%s\"}", i ? ", " : "",
               (unsigned long)regions[i].base, regions[i].size, regions[i].prot);
    printf("], \"result\": %d}\n", result);
    fflush(stdout);

    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
