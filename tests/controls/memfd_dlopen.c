/* Positive control: a shared object loaded from a memfd. Writes the payload shared object
 * embedded in its own .rodata into a memfd and dlopen()s it through /proc/self/fd/N; the
 * dynamic loader then maps it executable from a file that exists on no disk ("/memfd:...").
 * The READY regions are the executable mappings of that memfd, read from /proc/self/maps. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef PAYLOAD_PATH
#error "build with -DPAYLOAD_PATH='\"/abs/path/payload.so\"'"
#endif

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global payload_image\n"
        "payload_image:\n"
        ".incbin \"" PAYLOAD_PATH "\"\n"
        ".global payload_image_end\n"
        "payload_image_end:\n"
        ".previous\n");
extern const unsigned char payload_image[], payload_image_end[];

int main(void)
{
    int fd = memfd_create("unbacked-payload", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        return 1;
    }
    size_t len = (size_t)(payload_image_end - payload_image);
    if (write(fd, payload_image, len) != (ssize_t)len) {
        perror("write");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    void *h = dlopen(path, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*entry)(void) = (int (*)(void))dlsym(h, "unbacked_payload_entry");
    int result = entry ? entry() : -1;
    if (result != 42) {
        fprintf(stderr, "payload returned %d\n", result);
        return 1;
    }
    printf("READY {\"pid\": %d, \"mode\": \"memfd-dlopen\", \"entry\": %lu, \"regions\": [",
           (int)getpid(), (unsigned long)entry);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[5];
        if (strstr(line, "memfd:unbacked-payload") &&
            sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && perms[2] == 'x')
            printf("%s{\"base\": %lu, \"size\": %lu, \"prot\": \"%.3s\"}", n++ ? ", " : "", lo,
                   hi - lo, perms);
    }
    if (maps)
        fclose(maps);
    printf("], \"result\": %d}\n", result);
    fflush(stdout);
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
