/* Program that the memfd controls execute from memory: it announces itself like every control
 * (one READY line) and waits until stdin closes, so the sensor tests can inspect it. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char buf[256];
    const char *mode = argc > 1 ? argv[1] : "memfd-exec";
    printf("READY {\"pid\": %d, \"mode\": \"%s\", \"regions\": [], \"result\": 42}\n",
           (int)getpid(), mode);
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
