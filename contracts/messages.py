"""The protocol's own messages: the base of every payload model, and the one failure reply
every participant may answer any command with."""

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    """A command's or a reply's payload: immutable, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandFailed(Message):
    """The participant did not do the command: nothing of it took effect, unless
    `effect_unknown` says the participant cannot tell.

    `reason` is a stable machine-readable word (`insufficient_stock`, `unknown_vendor`, ...).
    """

    reason: str = Field(min_length=1, max_length=64)
    detail: str | None = Field(default=None, max_length=1000)
    # True: trying again later may work (the participant's dependency was away).
    # False: a business answer that will not change.
    transient: bool = False
    # True: the participant cannot tell whether the command took effect (an HTTP call
    # that timed out): if the saga gives the step up, it is compensated to be sure.
    effect_unknown: bool = False
