/* tasked-install SRC DST: copies the regular files of directory SRC (the self-contained runner
 * bundle: tasked-runner, glibc's loader and libraries, the CA bundle) into DST, an emptyDir a
 * RunnerPool's runner container then mounts read-only. The runner image has no shell and no cp,
 * so its init container runs this; it is static so it needs nothing else in the image.
 * Only plain file names are copied (no subdirectories, no symlinks followed out of SRC). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 64
#define MAX_BYTES (256L * 1024 * 1024)

static int copy_one(int sdir, int ddir, const char *name)
{
	char buf[65536];
	struct stat st;
	long total = 0;
	ssize_t n;
	int in, out, rc = 0;

	in = openat(sdir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(in);
		return 1; /* not a regular file: skipped */
	}
	out = openat(ddir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0555);
	if (out < 0) {
		rc = -errno;
		close(in);
		return rc;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		total += n;
		if (total > MAX_BYTES) {
			rc = -EFBIG;
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				rc = -errno;
				goto done;
			}
			off += w;
		}
	}
	if (n < 0)
		rc = -errno;
done:
	if (fchmod(out, 0555) < 0 && rc == 0)
		rc = -errno;
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	close(in);
	return rc;
}

int main(int argc, char **argv)
{
	struct dirent *e;
	DIR *d;
	int sdir, ddir, count = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: tasked-install SRC-DIR DST-DIR\n");
		return 2;
	}
	sdir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ddir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sdir < 0 || ddir < 0) {
		fprintf(stderr, "tasked-install: cannot open %s: %s\n",
			sdir < 0 ? argv[1] : argv[2], strerror(errno));
		return 1;
	}
	d = fdopendir(dup(sdir));
	if (!d) {
		fprintf(stderr, "tasked-install: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	while ((e = readdir(d))) {
		int r;
		if (e->d_name[0] == '.')
			continue;
		if (++count > MAX_FILES) {
			fprintf(stderr, "tasked-install: more than %d files in %s\n", MAX_FILES,
				argv[1]);
			return 1;
		}
		r = copy_one(sdir, ddir, e->d_name);
		if (r < 0) {
			fprintf(stderr, "tasked-install: %s: %s\n", e->d_name, strerror(-r));
			return 1;
		}
	}
	closedir(d);
	printf("tasked-install: copied the runner bundle from %s to %s\n", argv[1], argv[2]);
	return 0;
}
