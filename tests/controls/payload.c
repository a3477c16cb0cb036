/* Benign payload for the positive controls: a position-independent shared object whose entry
 * point returns 42. It carries one R_X86_64_RELATIVE relocation (the pointer table) so a loader
 * that forgets to relocate calls into garbage instead of passing: the controls prove a real,
 * complete reflective load, not just a copy. Built with -nostdlib: it needs nothing at all. */

static volatile int base_value = 40;
static volatile int *volatile table[] = {&base_value};

__attribute__((visibility("default"))) int unbacked_payload_entry(void)
{
    return *table[0] + 2;
}
