/*
 * libFuzzer target: the config loader and the members loader on arbitrary
 * bytes. Both read from a path, so the input goes into a memfd named
 * through /proc/self/fd.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../gateway/config.h"
#include "../../gateway/members.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	struct gw_config *cfg = NULL;
	struct gw_members *m = NULL;
	struct diag d = { 0 };

	if (fd < 0) {
		fd = memfd_create("fuzz.yaml", 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		return 0;
	if (gw_config_load(path, &cfg, &d) == 0)
		gw_config_free(cfg);
	diag_clear(&d);
	if (gw_members_load(path, &m, &d) == 0)
		gw_members_free(m);
	diag_clear(&d);
	return 0;
}
