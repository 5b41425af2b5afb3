/*
 * Writing a whole buffer to a descriptor: write(2) may write less than asked
 * and may be interrupted; this goes on until all of it is written.
 */
#ifndef NOORDPOORT_FDIO_H
#define NOORDPOORT_FDIO_H

#include <stddef.h>

/* Writes |len| bytes of |buf| to |fd|, retrying on EINTR and short writes.
 * Returns 0, or -1 with errno set (EIO when write wrote nothing). */
int fd_write_all(int fd, const void *buf, size_t len);

#endif
