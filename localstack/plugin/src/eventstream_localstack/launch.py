"""Starts LocalStack (``python -m localstack.runtime.main``) with a fix for a shutdown hang of its hypercorn
gateway server, which ``localstack/run`` selects because it is the only one that binds GATEWAY_LISTEN's host.

LocalStack 4.13.1's ``HypercornRuntimeServer.shutdown`` calls ``loop.stop()`` from the shutdown thread. That is
not thread-safe: when the event loop is already asleep in ``select()`` it never sees the request, and the
process stays alive after Ctrl-C/SIGTERM with its port closed. Scheduling the stop through
``call_soon_threadsafe`` wakes the loop up.

It also keeps LocalStack from starting services again while it shuts down. Shutdown stops every service first
and the gateway only after Lambda's stop returned (up to 2 s: it joins its event pollers' SQS long polls);
meanwhile the gateway answers 503 to clients but still serves LocalStack's own internal calls, and
``ServiceManager.require``, which the gateway calls for a service's first request, starts a STOPPED service
again. Lambda publishes an invocation's CloudWatch metrics from a thread of its own (``version_manager``): a
function invoked just before Ctrl-C sends PutMetricData after CloudWatch was stopped and, when it is CloudWatch's
first request, starts it again with a non-daemon ``cloudwatch-scheduler`` thread that nothing stops any more.
The interpreter then waits for that thread forever at exit (main thread in ``threading._shutdown``; seen in the
tests, more often on a loaded machine). Such a call now gets an error instead.

``kill -USR2 <pid>`` writes every thread's stack to stderr (faulthandler: it works even when the main thread
is stuck in C, e.g. joining a thread at interpreter exit), followed by the threads' names. The tests send it
to a LocalStack that does not stop in time, so that the hang can be read in its log.
"""

import faulthandler
import signal
import sys
import threading

from localstack.runtime import events
from localstack.runtime.main import main
from localstack.runtime.server.hypercorn import HypercornRuntimeServer
from localstack.services.plugins import (
    ServiceContainer,
    ServiceManager,
    ServiceState,
    ServiceStateException,
)

_shutdown = HypercornRuntimeServer.shutdown


def _shutdown_and_wake_loop(self: HypercornRuntimeServer) -> None:
    _shutdown(self)
    self.loop.call_soon_threadsafe(self.loop.stop)


HypercornRuntimeServer.shutdown = _shutdown_and_wake_loop

_require = ServiceManager.require
_start = ServiceContainer.start


def _require_unless_stopping(self: ServiceManager, name: str):
    # Refused before LocalStack's require() polls up to 30 s for a STOPPING service to be STOPPED.
    container = self.get_service_container(name)
    if events.infra_stopping.is_set() and container and container.state != ServiceState.RUNNING:
        raise ServiceStateException(f"service {name} is {container.state.value}: LocalStack is shutting down")
    return _require(self, name)


def _start_unless_stopping(self: ServiceContainer) -> bool:
    # A request that found the service still running may reach start() after shutdown stopped it.
    if events.infra_stopping.is_set():
        self.errors.append(ServiceStateException(f"service {self.service.name()} not started: shutting down"))
        return False
    return _start(self)


ServiceManager.require = _require_unless_stopping
ServiceContainer.start = _start_unless_stopping


def _print_thread_names(signum, frame) -> None:
    """faulthandler names threads by id only; this runs later, on the main thread, when it can run Python."""
    for thread in threading.enumerate():
        print(f"thread 0x{thread.ident or 0:016x} {thread.name!r} daemon={thread.daemon}", file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR2, _print_thread_names)
faulthandler.register(signal.SIGUSR2, all_threads=True, chain=True)

if __name__ == "__main__":
    main()
