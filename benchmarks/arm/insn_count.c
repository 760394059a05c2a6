/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * doorguard's QEMU TCG plugin: counts the guest instructions executed between
 * two marker system calls, so a benchmark can say what one inference costs on
 * an emulated Cortex-A72/A76 as a deterministic number instead of a timing.
 *
 * Built against the plugin header of Debian's own qemu source package (the
 * header is GPL-2.0-or-later, hence this file's licence; it is a separate
 * program loaded by qemu-aarch64, not part of doorguard's Python package).
 *
 * Markers (the guest calls them from Python, see benchmarks/arm/guest.py):
 *   lseek(MARK_START, tag, 0)  start counting segment `tag`
 *   lseek(MARK_STOP,  tag, 0)  stop it; appends "tag count" to the out= file
 * Both fds are never open, so the kernel answers EBADF and nothing else happens.
 *
 * Counting is a per-translation-block inline add of the block's instruction
 * count to one global counter: cheap, and exact for a single-threaded guest.
 * With several guest threads running at once the adds can race, so the
 * benchmark runs the interpreter with one thread.
 *
 *   qemu-aarch64 -plugin ./libinsncount.so,out=/tmp/counts.txt -cpu cortex-a72 ...
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define AARCH64_NR_LSEEK 62
#define MARK_START 0x3D00D001u
#define MARK_STOP 0x3D00D002u

static uint64_t insns;      /* instructions executed so far, all vCPUs */
static uint64_t start_at;   /* value of insns at the last start marker */
static uint64_t start_tag;
static int started;
static FILE *out;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                       uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                       uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    /* An int fd lives in the low 32 bits of x0; the upper half is unspecified. */
    uint32_t fd = (uint32_t)a1;

    if (num != AARCH64_NR_LSEEK || (fd != MARK_START && fd != MARK_STOP)) {
        return;
    }
    if (fd == MARK_START) {
        start_at = insns;
        start_tag = a2;
        started = 1;
        return;
    }
    if (!started || a2 != start_tag) {
        fprintf(out, "error stop %" PRIu64 " without start\n", a2);
    } else {
        fprintf(out, "%" PRIu64 " %" PRIu64 "\n", a2, insns - start_at);
    }
    fflush(out);
    started = 0;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    if (out != stderr) {
        fclose(out);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    out = stderr;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "a");
            if (out == NULL) {
                fprintf(stderr, "insn_count: cannot open %s\n", argv[i] + 4);
                return -1;
            }
        } else {
            fprintf(stderr, "insn_count: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
