"""Instance state names, defined once (the meanings follow Nova's).

``vm_state`` is what the instance *is*, ``task_state`` what is being done to it
(None when idle), ``power_state`` what the hypervisor last reported.  The API's
``status`` is derived from the first two by :func:`status_of`.
"""

from vmflow.states import power_state, task_states, vm_states
from vmflow.states.status import status_of

__all__ = ["power_state", "task_states", "vm_states", "status_of"]
