"""The words the core writes for why a step failed or a reply was not applied."""

from typing import Final

# A reply of the wrong type or shape: the step's effect is unknown.
PROTOCOL_ERROR: Final = "protocol_error"
TIMEOUT: Final = "timeout"
CANCELLED: Final = "cancelled"
# A command or condition that could not be made from the saga's data: nothing was sent.
INVALID_STEP_INPUT: Final = "invalid_step_input"
# A step beside a failed one, given up while it waited to be tried again.
ABANDONED: Final = "abandoned"

# Why a reply was recorded and not applied (ReplyIgnored.why).
SAGA_ENDED: Final = "saga_terminal"
NOT_AWAITED: Final = "not_awaited"
EARLIER_TRY_TRANSIENT: Final = "earlier_try_transient"
