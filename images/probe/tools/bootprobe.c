/* bootprobe.c - boots the probe on raw KVM through either entry, the way
 * flint lays a guest out (guest-boot/src/layout.rs), to test what QEMU's PVH
 * loader cannot: the Linux 64-bit boot protocol entry. Not part of flint.
 *
 *   cc -O2 -o /tmp/bootprobe images/probe/tools/bootprobe.c
 *   bootprobe [-e pvh|linux64] [-m MiB] [-c CMDLINE] [-i INITRD]
 *             [-d DSDT.aml [-s]] [-t SECONDS] [-C] probe.elf
 *
 * -d builds RSDP (rev 2) / XSDT / FADT around the given DSDT at 0xE0000 and
 * passes the RSDP address (PVH rsdp_paddr, zero page acpi_rsdp_addr), or
 * with -s passes 0 so the probe must scan for it. -C registers the COM1 data
 * port as coalesced PIO (KVM_CAP_COALESCED_PIO): KVM queues the bytes in a
 * ring instead of exiting to userspace for each, and they are drained here
 * before every exit is handled.
 * Serial (0x3f8) goes to stdout; a summary goes to stderr. Exit status: the
 * byte written to port 0xf4; 250 triple fault (shutdown), 251 hlt with
 * nothing pending, 252 KVM internal error, 253 i8042 reset, 124 timeout.
 *
 * Linux 64-bit entry state (as guest-boot's linux64_entry_state): GDT at
 * 0x500 (CS 0x10 64-bit, DS 0x18, TR 0x20), identity map of 0-4 GiB in 2 MiB
 * pages at 0x9000, CR0 0x80050033, CR4 PAE, EFER LME|LMA, rsi = zero page
 * at 0x6000. PVH: 32-bit flat segments, paging off, rbx = start info. */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GDT 0x500
#define INFO 0x6000
#define PVH_LISTS 0x7000
#define PT 0x9000
#define CMDLINE 0x20000
#define ACPI 0xe0000
#define HOLE (3ull << 30)
#define die(...) do { fprintf(stderr, "bootprobe: " __VA_ARGS__); exit(2); } while (0)

static uint8_t *mem;
static uint64_t mem_size;

static void *at(uint64_t gpa) { return mem + gpa; }
static void put(uint64_t gpa, uint64_t v, int n) { memcpy(at(gpa), &v, n); }
static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static struct kvm_coalesced_mmio_ring *ring;
static unsigned ring_max;
static unsigned long serial, coalesced;

/* Serial bytes KVM queued without exiting, in order, before anything else. */
static void drain(void) {
	while (ring && ring->first != ring->last) {
		struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[ring->first];
		if (e->pio && e->phys_addr == 0x3f8) fwrite(e->data, 1, e->len, stdout), serial += e->len, coalesced++;
		__sync_synchronize();
		ring->first = (ring->first + 1) % ring_max;
	}
}

static void on_alarm(int sig) { (void)sig; fprintf(stderr, "bootprobe: timeout\n"); _exit(124); }

static uint8_t checksum(uint8_t *p, size_t n) {
	uint8_t s = 0;
	while (n--) s += *p++;
	return (uint8_t)-s;
}

static uint8_t *read_file(const char *path, size_t *len) {
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) die("cannot open %s\n", path);
	uint8_t *p = malloc(st.st_size + 1);
	if (!p || read(fd, p, st.st_size) != st.st_size) die("cannot read %s\n", path);
	close(fd);
	*len = st.st_size;
	return p;
}

static void header(uint64_t gpa, const char *sig, uint32_t len, uint8_t rev) {
	memcpy(at(gpa), sig, 4);
	put(gpa + 4, len, 4);
	put(gpa + 8, rev, 1);
	memcpy(at(gpa + 10), "FLINT ", 6);
	memcpy(at(gpa + 16), "BOOTPROB", 8);
	put(gpa + 24, 1, 4);
}

/* RSDP at ACPI, XSDT, FADT (276 bytes, X_DSDT), then the DSDT; returns the RSDP. */
static uint64_t build_acpi(const char *dsdt_path) {
	size_t dlen;
	uint8_t *dsdt = read_file(dsdt_path, &dlen);
	uint64_t rsdp = ACPI, xsdt = ACPI + 0x40, fadt = xsdt + 0x40, dsdt_at = fadt + 0x120;
	if (dsdt_at + dlen > 0x100000) die("DSDT too large\n");
	memcpy(at(dsdt_at), dsdt, dlen);
	if (memcmp(dsdt, "DSDT", 4)) die("%s is not a DSDT\n", dsdt_path);
	header(fadt, "FACP", 276, 6);
	put(fadt + 40, (uint32_t)dsdt_at, 4);
	put(fadt + 140, dsdt_at, 8);
	put(fadt + 9, checksum(at(fadt), 276), 1);
	header(xsdt, "XSDT", 44, 1);
	put(xsdt + 36, fadt, 8);
	put(xsdt + 9, checksum(at(xsdt), 44), 1);
	memcpy(at(rsdp), "RSD PTR ", 8);
	memcpy(at(rsdp + 9), "FLINT ", 6);
	put(rsdp + 15, 2, 1);
	put(rsdp + 20, 36, 4);
	put(rsdp + 24, xsdt, 8);
	put(rsdp + 8, checksum(at(rsdp), 20), 1);
	put(rsdp + 32, checksum(at(rsdp), 36), 1);
	return rsdp;
}

/* Loads PT_LOADs; returns e_entry, and the PVH note's entry in *pvh. */
static uint64_t load_elf(const char *path, uint64_t *pvh) {
	size_t len;
	uint8_t *img = read_file(path, &len);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	if (len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_phoff + eh->e_phnum * sizeof(Elf64_Phdr) > len)
		die("%s: not an ELF64 image\n", path);
	for (Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff); ph < (Elf64_Phdr *)(img + eh->e_phoff) + eh->e_phnum; ph++) {
		if (ph->p_offset + ph->p_filesz > len) die("segment beyond the file\n");
		if (ph->p_type == PT_LOAD) {
			if (ph->p_paddr + ph->p_memsz > mem_size) die("segment does not fit\n");
			memcpy(at(ph->p_paddr), img + ph->p_offset, ph->p_filesz);
		}
		for (uint64_t off = 0; ph->p_type == PT_NOTE && off + 12 <= ph->p_filesz;) {
			Elf64_Nhdr *n = (Elf64_Nhdr *)(img + ph->p_offset + off);
			uint64_t desc = off + 12 + ((n->n_namesz + 3) & ~3u);
			if (n->n_type == 18 && n->n_namesz == 4 && !memcmp(n + 1, "Xen", 4) && desc + 4 <= ph->p_filesz)
				*pvh = *(uint32_t *)(img + ph->p_offset + desc);
			off = desc + ((n->n_descsz + 3) & ~3u);
		}
	}
	return eh->e_entry;
}

struct e820 { uint64_t addr, size; uint32_t type; };

static int memory_map(struct e820 *map) {
	uint64_t low = mem_size < HOLE ? mem_size : HOLE;
	int n = 0;
	map[n++] = (struct e820){0, 0x9fc00, 1};
	map[n++] = (struct e820){0x9fc00, 0x100000 - 0x9fc00, 2};
	map[n++] = (struct e820){0x100000, low - 0x100000, 1};
	if (mem_size > HOLE) map[n++] = (struct e820){1ull << 32, mem_size - HOLE, 1};
	return n;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int l, int db, int sys) {
	*s = (struct kvm_segment){.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
				  .s = !sys, .l = l, .db = db, .g = 1};
}

int main(int argc, char **argv) {
	const char *entry_kind = "pvh", *cmdline = "", *initrd = 0, *dsdt = 0;
	uint64_t mib = 128;
	int scan = 0, opt, timeout = 10, coalesce = 0;
	while ((opt = getopt(argc, argv, "e:m:c:i:d:st:C")) != -1) {
		switch (opt) {
		case 'e': entry_kind = optarg; break;
		case 'm': mib = strtoull(optarg, 0, 0); break;
		case 'c': cmdline = optarg; break;
		case 'i': initrd = optarg; break;
		case 'd': dsdt = optarg; break;
		case 's': scan = 1; break;
		case 't': timeout = atoi(optarg); break;
		case 'C': coalesce = 1; break;
		default: die("bad option\n");
		}
	}
	if (optind + 1 != argc) die("usage: bootprobe [-e pvh|linux64] [-m MiB] [-c CMDLINE] [-i INITRD] [-d DSDT.aml [-s]] [-t SECONDS] [-C] probe.elf\n");
	int linux64 = !strcmp(entry_kind, "linux64");
	signal(SIGALRM, on_alarm);
	alarm(timeout);

	mem_size = mib << 20;
	uint64_t span = mem_size > HOLE ? (1ull << 32) + mem_size - HOLE : mem_size;
	mem = mmap(0, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) die("out of memory\n");
	uint64_t pvh = 0, e_entry = load_elf(argv[optind], &pvh);
	if (!linux64 && !pvh) die("no PVH note\n");

	size_t clen = strlen(cmdline);
	memcpy(at(CMDLINE), cmdline, clen + 1);
	uint64_t rd_addr = 0, rd_size = 0;
	if (initrd) {
		size_t len;
		uint8_t *p = read_file(initrd, &len);
		uint64_t low = mem_size < HOLE ? mem_size : HOLE;
		rd_size = len;
		rd_addr = (low - len) & ~0xfffull;
		memcpy(at(rd_addr), p, len);
	}
	uint64_t rsdp = dsdt ? build_acpi(dsdt) : 0;
	if (scan) rsdp = 0;
	struct e820 map[4];
	int entries = memory_map(map);

	struct kvm_regs r = {.rflags = 2, .rsp = 0x8ff0};
	if (linux64) {
		uint8_t *zp = at(INFO);
		put(INFO + 0x1fe, 0xaa55, 2);
		memcpy(zp + 0x202, "HdrS", 4);
		put(INFO + 0x228, CMDLINE, 4);
		put(INFO + 0x238, 2047, 4);
		put(INFO + 0x218, (uint32_t)rd_addr, 4);
		put(INFO + 0x21c, (uint32_t)rd_size, 4);
		put(INFO + 0x0c0, rd_addr >> 32, 4);
		put(INFO + 0x0c4, rd_size >> 32, 4);
		put(INFO + 0x070, rsdp, 8);
		put(INFO + 0x1e8, entries, 1);
		for (int i = 0; i < entries; i++) {
			put(INFO + 0x2d0 + 20 * i, map[i].addr, 8);
			put(INFO + 0x2d0 + 20 * i + 8, map[i].size, 8);
			put(INFO + 0x2d0 + 20 * i + 16, map[i].type, 4);
		}
		uint64_t gdt[5] = {0, 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x008f8b000000ffff};
		memcpy(at(GDT), gdt, sizeof gdt);
		put(PT, (PT + 0x1000) | 3, 8);
		for (int i = 0; i < 4; i++) put(PT + 0x1000 + 8 * i, (PT + 0x2000 + 0x1000 * i) | 3, 8);
		for (uint64_t i = 0; i < 2048; i++) put(PT + 0x2000 + 8 * i, (i << 21) | 0x83, 8);
		r.rip = e_entry, r.rsi = INFO;
	} else {
		put(INFO, 0x336ec578, 4);
		put(INFO + 4, 1, 4);
		put(INFO + 12, initrd ? 1 : 0, 4);
		put(INFO + 16, initrd ? PVH_LISTS : 0, 8);
		put(INFO + 24, CMDLINE, 8);
		put(INFO + 32, rsdp, 8);
		put(INFO + 40, PVH_LISTS + 0x100, 8);
		put(INFO + 48, entries, 4);
		put(PVH_LISTS, rd_addr, 8);
		put(PVH_LISTS + 8, rd_size, 8);
		for (int i = 0; i < entries; i++) {
			put(PVH_LISTS + 0x100 + 24 * i, map[i].addr, 8);
			put(PVH_LISTS + 0x100 + 24 * i + 8, map[i].size, 8);
			put(PVH_LISTS + 0x100 + 24 * i + 16, map[i].type, 4);
		}
		r.rip = pvh, r.rbx = INFO;
	}

	double t0 = now();
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) die("cannot create a VM\n");
	struct kvm_userspace_memory_region low = {.slot = 0, .memory_size = mem_size < HOLE ? mem_size : HOLE, .userspace_addr = (uint64_t)mem};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &low)) die("memslot\n");
	if (mem_size > HOLE) {
		struct kvm_userspace_memory_region high = {.slot = 1, .guest_phys_addr = 1ull << 32, .memory_size = mem_size - HOLE,
							   .userspace_addr = (uint64_t)mem + (1ull << 32)};
		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &high)) die("memslot\n");
	}
	int cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	long run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, cpu, 0);
	if (cpu < 0 || run == MAP_FAILED) die("vcpu\n");
	int ring_page = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO);
	if (coalesce) {
		struct kvm_coalesced_mmio_zone zone = {.addr = 0x3f8, .size = 1, .pio = 1};
		if (ring_page <= 0 || ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO) <= 0 ||
		    ioctl(vm, KVM_REGISTER_COALESCED_MMIO, &zone))
			die("no coalesced PIO\n");
		ring = (void *)((uint8_t *)run + ring_page * sysconf(_SC_PAGESIZE));
		ring_max = (sysconf(_SC_PAGESIZE) - sizeof(*ring)) / sizeof(struct kvm_coalesced_mmio);
	}
	struct { struct kvm_cpuid2 c; struct kvm_cpuid_entry2 e[100]; } cpuid = {.c.nent = 100};
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid) || ioctl(cpu, KVM_SET_CPUID2, &cpuid)) die("cpuid\n");
	struct kvm_sregs sr;
	if (ioctl(cpu, KVM_GET_SREGS, &sr)) die("sregs\n");
	if (linux64) {
		seg(&sr.cs, 0x10, 0xb, 1, 0, 0);
		seg(&sr.ds, 0x18, 0x3, 0, 1, 0);
		seg(&sr.tr, 0x20, 0xb, 0, 0, 1);
		sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
		sr.gdt.base = GDT, sr.gdt.limit = 39;
		sr.cr0 = 0x80050033, sr.cr3 = PT, sr.cr4 = 0x20, sr.efer = 0x500;
	} else {
		seg(&sr.cs, 0x10, 0xb, 0, 1, 0);
		seg(&sr.ds, 0x18, 0x3, 0, 1, 0);
		sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
		sr.cr0 = 0x11, sr.cr4 = 0, sr.efer = 0;
	}
	if (ioctl(cpu, KVM_SET_SREGS, &sr) || ioctl(cpu, KVM_SET_REGS, &r)) die("registers\n");

	double t_run = now(), t_boot = 0;
	unsigned long exits = 0;
	int status = -1;
	while (status < 0) {
		if (ioctl(cpu, KVM_RUN, 0) < 0) die("KVM_RUN failed\n");
		exits++;
		drain();
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.direction == KVM_EXIT_IO_IN) {
				memset(data, 0, run->io.size * run->io.count);
				if (run->io.port == 0x3fd) memset(data, 0x60, run->io.count);
			} else if (run->io.port == 0x3f8) {
				fwrite(data, run->io.size, run->io.count, stdout);
				serial += run->io.count;
			} else if (run->io.port == 0x3f0 && data[0] == 123 && !t_boot) {
				t_boot = now();
			} else if (run->io.port == 0xf4) {
				status = data[0];
			} else if (run->io.port == 0x64 && data[0] == 0xfe) {
				status = 253;
			}
			break;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write) memset(run->mmio.data, 0, sizeof run->mmio.data);
			break;
		case KVM_EXIT_HLT: status = 251; break;
		case KVM_EXIT_SHUTDOWN: status = 250; break;
		case KVM_EXIT_INTERNAL_ERROR:
			ioctl(cpu, KVM_GET_REGS, &r);
			fprintf(stderr, "bootprobe: internal error %u at rip %#llx\n", run->internal.suberror, r.rip);
			status = 252;
			break;
		default:
			ioctl(cpu, KVM_GET_REGS, &r);
			die("unexpected exit %u at rip %#llx\n", run->exit_reason, r.rip);
		}
	}
	double t_end = now();
	drain();
	fflush(stdout);
	fprintf(stderr, "bootprobe: status=%d setup_us=%.0f boot_complete_us=%.0f run_us=%.0f exits=%lu serial_bytes=%lu coalesced=%lu\n",
		status, t_run - t0, t_boot ? t_boot - t_run : -1, t_end - t_run, exits, serial, coalesced);
	return status;
}
