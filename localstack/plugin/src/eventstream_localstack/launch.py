"""Starts LocalStack (``python -m localstack.runtime.main``) with a fix for a shutdown hang of its hypercorn
gateway server, which ``localstack/run`` selects because it is the only one that binds GATEWAY_LISTEN's host.

LocalStack 4.13.1's ``HypercornRuntimeServer.shutdown`` calls ``loop.stop()`` from the shutdown thread. That is
not thread-safe: when the event loop is already asleep in ``select()`` it never sees the request, and the
process stays alive after Ctrl-C/SIGTERM with its port closed. Scheduling the stop through
``call_soon_threadsafe`` wakes the loop up.
"""

from localstack.runtime.main import main
from localstack.runtime.server.hypercorn import HypercornRuntimeServer

_shutdown = HypercornRuntimeServer.shutdown


def _shutdown_and_wake_loop(self: HypercornRuntimeServer) -> None:
    _shutdown(self)
    self.loop.call_soon_threadsafe(self.loop.stop)


HypercornRuntimeServer.shutdown = _shutdown_and_wake_loop

if __name__ == "__main__":
    main()
