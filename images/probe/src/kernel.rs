//! Everything the probe runs at CPL0, in assembly so that exactly these
//! instructions (and no compiler-chosen SSE) run in kernel mode, which is
//! emulated instruction by instruction on nested-PVM hosts.
//!
//! - the Xen PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`) and the 32-bit PVH entry,
//!   which enables PAE + long mode with the static page tables and far-jumps
//!   into 64-bit code;
//! - the 64-bit Linux-boot-protocol entry (`e_entry`): already in long mode;
//! - the common setup: CR0/CR4 (SSE for user mode), our GDT/TSS/IDT, then
//!   `iretq` to [`probe_user_start`] at CPL3;
//! - the IDT stubs: vector 3 (DPL 3, reached by a user `int3`) is the service
//!   call; every other vector hands the fault to the user-mode reporter
//!   `probe_fault` (or, if that faults too, exits with status 120 at once);
//! - static data: identity page tables for 0..8 GiB in 2 MiB pages with the
//!   U/S bit set (3-4 GiB, the MMIO hole, uncached), GDT, TSS, IDT (its handler addresses are split by symbols the
//!   linker script computes), stacks.
//!
//! Service ABI (user `int3`, rax = service; other registers preserved unless
//! listed; rax returns 0, or the value for `inb`/`rdmsr`, or -1 for an
//! unknown service; `write` leaves rax alone). DF must be clear (as Rust
//! and the SysV ABI guarantee):
//!
//! | rax | service | arguments                                | clobbers      |
//! |-----|---------|------------------------------------------|---------------|
//! | 0   | nop     | —                                        | —             |
//! | 1   | write   | rsi = bytes, rcx = length → COM1 (`rep outsb`) | rsi, rcx, rdx |
//! | 2   | outb    | dx = port, dil = value                   | —             |
//! | 3   | wrmsr   | ecx = MSR, rdi = value                   | —             |
//! | 4   | inb     | dx = port → rax                          | —             |
//! | 5   | rdmsr   | ecx = MSR → rax                          | —             |
//! | 6   | halt    | never returns (`cli; hlt` loop)          |               |
//! | 7   | crash   | never returns: empty IDT, then `ud2` → triple fault |    |
//! | 8   | spin    | rcx = count: `dec rcx; jnz` loop (measures the emulator) | rcx |
//! | 9   | cpuid   | edi = leaf, ecx = subleaf → eax, ebx, ecx, edx (`cpuid` at CPL0) | rbx, rcx, rdx |
//! | 10  | irq-on  | sets IF in the user frame: user mode takes interrupts from now on | — |
//! | 11  | irq-off | clears IF in the user frame                | —             |
//!
//! Vectors 32-255 (external interrupts, `probe.irq=1`) share one stub that
//! counts them in `probe_irq_count`, stores the TSC in `probe_irq_tsc`,
//! writes the xAPIC EOI register (0xFEE000B0) and returns.

use core::arch::global_asm;

/// Service numbers (rax at `int3`).
pub mod svc {
    /// Does nothing: measures the round trip.
    pub const NOP: u64 = 0;
    /// rsi/rcx bytes to COM1.
    pub const WRITE: u64 = 1;
    /// `out dx, al`.
    pub const OUTB: u64 = 2;
    /// `wrmsr`.
    pub const WRMSR: u64 = 3;
    /// `in al, dx`.
    pub const INB: u64 = 4;
    /// `rdmsr`.
    pub const RDMSR: u64 = 5;
    /// Halt forever.
    pub const HALT: u64 = 6;
    /// Triple fault.
    pub const CRASH: u64 = 7;
    /// Spin `rcx` times in kernel mode.
    pub const SPIN: u64 = 8;
    /// `cpuid` in kernel mode.
    pub const CPUID: u64 = 9;
    /// Set IF in the user-mode RFLAGS (interrupts delivered from now on).
    pub const IRQ_ON: u64 = 10;
    /// Clear IF in the user-mode RFLAGS.
    pub const IRQ_OFF: u64 = 11;
}

global_asm!(
    r#"
    .set KERNEL_CS, 0x08
    .set USER_SS,   0x1b
    .set USER_CS,   0x23
    .set TSS_SEL,   0x28
    .set COM1,      0x3f8
    .set EXIT_PORT, 0xf4

/* ---- Xen PVH note: XEN_ELFNOTE_PHYS32_ENTRY ---------------------------- */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     /* n_namesz: "Xen\0" */
    .long 8                     /* n_descsz: a 64-bit address, as Linux */
    .long 18                    /* n_type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .quad probe_pvh_entry

/* ---- PVH entry: 32-bit protected mode, paging off, ebx = start info ----- */
    .section .text.boot, "ax"
    .code32
    .globl probe_pvh_entry
probe_pvh_entry:
    rdtsc
    movl %eax, probe_boot_tsc
    movl %edx, probe_boot_tsc + 4
    movl %ebx, %esi             /* hvm_start_info */
    xorl %edi, %edi             /* entry kind 0: PVH */
    movl $probe_pml4, %eax
    movl %eax, %cr3
    movl $0x620, %eax           /* PAE | OSFXSR | OSXMMEXCPT */
    movl %eax, %cr4
    movl $0xc0000080, %ecx      /* EFER */
    movl $0x100, %eax           /* LME */
    xorl %edx, %edx
    wrmsr
    movl $0x80010033, %eax      /* PG | WP | NE | ET | MP | PE */
    movl %eax, %cr0
    lgdt probe_gdt_ptr
    ljmp $KERNEL_CS, $probe_pvh64

    .code64
probe_pvh64:
    movl %esi, %esi             /* upper halves are undefined after the switch */
    xorl %edi, %edi
    jmp probe_common

/* ---- Linux 64-bit boot protocol entry: long mode, rsi = zero page -------- */
    .globl probe_linux64_entry
probe_linux64_entry:
    rdtsc
    movl %eax, probe_boot_tsc(%rip)
    movl %edx, probe_boot_tsc + 4(%rip)
    movl $1, %edi               /* entry kind 1: Linux 64-bit */
    movl $0x620, %eax           /* PAE | OSFXSR | OSXMMEXCPT */
    movq %rax, %cr4
    movl $0x80010033, %eax      /* PG | WP | NE | ET | MP | PE */
    movq %rax, %cr0
    movl $probe_pml4, %eax
    movq %rax, %cr3
    lgdt probe_gdt_ptr(%rip)

/* ---- common 64-bit setup, then iretq to user mode ----------------------- */
/* ds/es/ss are not reloaded: 64-bit mode ignores them, and the iretq below
 * loads the user ones (each load costs ~1 us emulated). */
probe_common:
    movl $probe_kstack_top, %esp
    movl $TSS_SEL, %eax
    ltr %ax
    lidt probe_idt_ptr(%rip)
    pushq $USER_SS
    pushq $probe_ustack_top
    pushq $0x2                  /* RFLAGS: IF = 0, IOPL = 0 */
    pushq $USER_CS
    pushq $probe_user_start
    iretq

/* ---- IDT stubs: 32 of 16 bytes each, at probe_isr_table ----------------- */
    .macro ISR_NOERR n
    .balign 16
    pushq $0
    pushq $\n
    jmp probe_fault_common
    .endm
    .macro ISR_ERR n
    .balign 16
    pushq $\n
    jmp probe_fault_common
    .endm

    .balign 4096
    .globl probe_isr_table
probe_isr_table:
    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    .balign 16
    jmp probe_service           /* vector 3: int3 from user mode = service */
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR 8
    ISR_NOERR 9
    ISR_ERR 10
    ISR_ERR 11
    ISR_ERR 12
    ISR_ERR 13
    ISR_ERR 14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR 17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR 21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR 29
    ISR_ERR 30
    ISR_NOERR 31
    .balign 16
probe_isr_table_end:

/* ---- service call: int3 from user mode, rax = service ------------------ */
/* Every instruction here is emulated (~0.7 us each on nested PVM): the hot
 * path, write, is tested first and takes five. */
probe_service:
    cmpl $1, %eax
    jne 1f
probe_svc_write:                /* rsi = bytes, rcx = length */
    movl $COM1, %edx
    rep outsb                   /* DF is clear: user code follows the ABI */
    iretq
1:  cmpq $12, %rax
    jae 10f
    jmpq *probe_service_table(,%rax,8)
10: movq $-1, %rax
    iretq
probe_svc_nop:
    xorl %eax, %eax
    iretq
probe_svc_outb:                 /* dx = port, dil = value */
    movl %edi, %eax
    outb %al, %dx
    xorl %eax, %eax
    iretq
probe_svc_wrmsr:                /* ecx = MSR, rdi = value */
    pushq %rdx
    movl %edi, %eax
    movq %rdi, %rdx
    shrq $32, %rdx
    wrmsr
    popq %rdx
    xorl %eax, %eax
    iretq
probe_svc_inb:                  /* dx = port */
    xorl %eax, %eax
    inb %dx, %al
    iretq
probe_svc_rdmsr:                /* ecx = MSR */
    pushq %rdx
    rdmsr
    shlq $32, %rdx
    orq %rdx, %rax
    popq %rdx
    iretq
probe_svc_halt:
    cli
61: hlt
    jmp 61b
probe_svc_crash:                /* no IDT, then #UD -> #GP -> #DF -> triple fault */
    lidt probe_null_idt_ptr(%rip)
    ud2
probe_svc_spin:                 /* rcx iterations of dec + jnz */
    testq %rcx, %rcx
    je probe_svc_nop
81: decq %rcx
    jnz 81b
    jmp probe_svc_nop
probe_svc_cpuid:                /* edi = leaf, ecx = subleaf -> eax, ebx, ecx, edx */
    movl %edi, %eax
    cpuid
    iretq
probe_svc_irq_on:               /* frame: rip, cs, rflags, rsp, ss */
    orl $0x200, 16(%rsp)
    xorl %eax, %eax
    iretq
probe_svc_irq_off:
    andl $~0x200, 16(%rsp)
    xorl %eax, %eax
    iretq

/* ---- external interrupts (vectors 32-255): count, TSC, EOI -------------- */
/* Ten emulated instructions. Only reached with IF set in user mode (service
 * 10, probe.irq=1); services run through interrupt gates, so never nested. */
    .balign 16
    .globl probe_irq_entry
probe_irq_entry:
    pushq %rax
    pushq %rdx
    rdtsc
    movl %eax, probe_irq_tsc(%rip)
    movl %edx, probe_irq_tsc + 4(%rip)
    incl probe_irq_count(%rip)
    movl $0xfee000b0, %eax      /* xAPIC EOI (the identity map, uncached) */
    movl %edx, (%rax)           /* any value */
    popq %rdx
    popq %rax
    iretq

/* ---- faults: hand over to the user-mode reporter ------------------------ */
/* stack: vector, error, rip, cs, rflags, rsp, ss */
probe_fault_common:
    cmpb $0, probe_fault_busy(%rip)
    jne 1f
    movb $1, probe_fault_busy(%rip)
    popq %rdi                   /* vector */
    popq %rsi                   /* error code */
    popq %rdx                   /* faulting rip */
    movq %cr2, %rcx
    pushq $USER_SS
    pushq $probe_fstack_top - 8 /* as if called: rsp + 8 is 16-byte aligned */
    pushq $0x2
    pushq $USER_CS
    pushq $probe_fault
    iretq
1:  /* the reporter itself faulted: exit 120 without a word */
    movb $120, %al
    outb %al, $EXIT_PORT
    movb $0xfe, %al
    outb %al, $0x64
    cli
2:  hlt
    jmp 2b

/* ---- user-mode start (CPL3, native speed) ------------------------------- */
    .section .text.user_start, "ax"
    .globl probe_user_start
probe_user_start:
    rdtsc
    shlq $32, %rdx
    orq %rax, %rdx
    movq %rdx, %r12             /* tsc at the first user instruction */
    movq %rdi, %r13             /* entry kind */
    movq %rsi, %r14             /* boot information */
    movl $__bss_start, %edi     /* zero .bss natively, not at CPL0 */
    movl $__bss_end, %ecx
    subq %rdi, %rcx
    xorl %eax, %eax
    cld
    rep stosb
    fninit
    ldmxcsr probe_mxcsr(%rip)
    movq %r13, %rdi
    movq %r14, %rsi
    movq %r12, %rdx
    call probe_main
    ud2

/* ---- kernel data --------------------------------------------------------- */
    .section .data.kernel, "aw"
    .balign 8
    .globl probe_boot_tsc
probe_boot_tsc:
    .quad 0
probe_fault_busy:
    .byte 0
    .balign 4
probe_mxcsr:
    .long 0x1f80

    .balign 8
probe_service_table:
    .quad probe_svc_nop, probe_svc_write, probe_svc_outb, probe_svc_wrmsr, probe_svc_inb, probe_svc_rdmsr, probe_svc_halt, probe_svc_crash, probe_svc_spin
    .quad probe_svc_cpuid, probe_svc_irq_on, probe_svc_irq_off

    .balign 8
    .globl probe_irq_tsc
probe_irq_tsc:
    .quad 0
    .globl probe_irq_count
probe_irq_count:
    .long 0

    .balign 16
probe_gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08 kernel code, 64-bit */
    .quad 0x00cf93000000ffff    /* 0x10 kernel data */
    .quad 0x00cff3000000ffff    /* 0x18 user data, DPL 3 */
    .quad 0x00affb000000ffff    /* 0x20 user code, 64-bit, DPL 3 */
    .word 0x67                  /* 0x28 TSS: limit */
    .word probe_tss_b01         /* base 15:0 */
    .byte probe_tss_b2          /* base 23:16 */
    .byte 0x89                  /* present, 64-bit TSS (available) */
    .byte 0
    .byte probe_tss_b3          /* base 31:24 */
    .long probe_tss_hi          /* base 63:32 */
    .long 0
probe_gdt_end:

    .balign 8
    .word 0, 0, 0
probe_gdt_ptr:
    .word probe_gdt_end - probe_gdt - 1
    .quad probe_gdt

    .balign 8
    .word 0, 0, 0
probe_idt_ptr:
    .word probe_idt_end - probe_idt - 1
    .quad probe_idt

    .balign 8
    .word 0, 0, 0
probe_null_idt_ptr:
    .word 0
    .quad 0

    .balign 16
    .globl probe_tss
probe_tss:
    .long 0
    .quad probe_kstack_top      /* rsp0 */
    .quad 0, 0                  /* rsp1, rsp2 */
    .quad 0
    .quad 0, 0, 0, 0, 0, 0, 0   /* ist1..7 */
    .quad 0
    .word 0
    .word 104                   /* no I/O permission bitmap */

    .balign 16
probe_idt:
    .set vec, 0
    .rept 32
    .word probe_isr_lo + vec * 16   /* handler 15:0 (the stubs never cross 64 KiB) */
    .word KERNEL_CS
    .byte 0
    .if vec == 3
    .byte 0xee                  /* present, DPL 3, interrupt gate */
    .else
    .byte 0x8e                  /* present, DPL 0, interrupt gate */
    .endif
    .word probe_isr_mid         /* handler 31:16 */
    .long probe_isr_hi          /* handler 63:32 */
    .long 0
    .set vec, vec + 1
    .endr
    .rept 256 - 32              /* external interrupts: one counting stub */
    .word probe_irq_lo
    .word KERNEL_CS
    .byte 0
    .byte 0x8e                  /* present, DPL 0, interrupt gate */
    .word probe_irq_mid
    .long probe_irq_hi
    .long 0
    .endr
probe_idt_end:

/* ---- identity page tables: 0..8 GiB, 2 MiB pages, user-accessible -------- */
/* 3-4 GiB (0xC0000000-0xFFFFFFFF, the MMIO hole: virtio-mmio windows, IOAPIC,
 * LAPIC) is mapped uncached (PCD | PWT), as a kernel maps device memory. */
    .section .pagetables, "aw"
    .balign 4096
    .globl probe_pml4
probe_pml4:
    .quad probe_pdpt + 0x7      /* present | writable | user */
    .fill 511, 8, 0
probe_pdpt:
    .set i, 0
    .rept 8
    .quad probe_pd + i * 4096 + 0x7
    .set i, i + 1
    .endr
    .fill 504, 8, 0
probe_pd:
    .set i, 0
    .rept 8 * 512
    .if (i >= 3 * 512) && (i < 4 * 512)
    .quad (i << 21) + 0x9f      /* present | writable | user | PWT | PCD | 2 MiB */
    .else
    .quad (i << 21) + 0x87      /* present | writable | user | 2 MiB */
    .endif
    .set i, i + 1
    .endr

/* ---- stacks (not loaded, not zeroed) ------------------------------------- */
    .section .stack, "aw", @nobits
    .balign 4096
    .space 4096
probe_kstack_top:
    .space 16384
probe_fstack_top:
    .space 65536
    .globl probe_ustack_top
probe_ustack_top:
"#,
    options(att_syntax)
);
