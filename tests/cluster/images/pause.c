/* The pod sandbox's process: PID 1 of the pod, holding its namespaces. It reaps the children
 * that get reparented to it and exits on SIGINT or SIGTERM. Built static (node.sh) and shipped
 * FROM scratch as the node's sandbox image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void)
{
	struct sigaction term = {.sa_handler = on_term};
	struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};

	if (getpid() != 1)
		return 1; /* only meaningful as a sandbox's PID 1 */
	if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0)
		return 2;
	for (;;)
		pause();
}
