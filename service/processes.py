"""The environment the supervisor (service/supervisor.py) hands the processes it starts."""

from __future__ import annotations

IPC_DIR_VARIABLE = "BERTSERVE_IPC_DIR"  # the run folder of the engine's sockets
FRONT_END_VARIABLE = "BERTSERVE_FRONT_END"  # a front end's number, 0 to N-1: the first says "ready"
