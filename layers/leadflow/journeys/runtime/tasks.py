"""The task contract: what a compiled journey task sends the step function, as typed models.

A task's payload (``leadflow.journeys.compiler``, ``Compiler.task``) names its ``action`` and
carries the step's own definition in ``step``. ``TASK`` parses the whole payload ONCE into one
request model per action — a discriminated union on ``action`` — whose ``step`` is the model of
what the compiler wrote there: the journey language's own models where the compiler dumps one
(``UpdateContact``, ``NotifySales``, ``Webhook``, ``WaitUntil``, ``Holdout``), else the specs below
(a send, a fused send, a branch with its folded acts, a ``wait_for``). The step function
(``leadflow.journeys.runtime.steps``) then dispatches on the parsed model through its table of handlers.

Invariants: every shape a definition still running may send parses (a running execution keeps
the definition it started on: the polling ``wait_for``, the ``schedule`` of a send by channel and
the ``split``/``holdout`` decision tasks of definitions compiled before folding); an unknown key
or action is refused when the request is parsed, never half-way through a step. A new step type
is one request model here (added to ``StepTask``) and one entry in the runner's table.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from leadflow.journeys.conditions import Condition
from leadflow.journeys.model import Exit, Holdout, NotifySales, Settings, UpdateContact, WaitUntil, Webhook
from leadflow.kernel import ids


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# --- what the compiler writes in ``step`` ---------------------------------------------------------


class SendSpec(_Spec):
    """One send (``Compiler._send_spec``; ``Compiler.send`` adds ``plan``)."""

    template: str = Field(min_length=1)
    purpose: Literal["marketing", "transactional", "confirmation"] = "marketing"
    channel: Literal["email", "sms"] | None = None
    template_version: str | None = None
    subject: str | None = None
    preheader: str | None = None
    deferrable: bool = False
    """The send may fail with ``SendDeferred`` (the task catches it and waits)."""
    plan: WaitUntil | None = None
    """The ``wait_until`` right after the send: the task returns its time (``at``)."""


class FoldedSend(SendSpec):
    """The one send of a fused send task, with the step id its message carries."""

    step_id: str = Field(min_length=1, max_length=64)


class SplitVariant(FoldedSend):
    below: float = Field(gt=0, le=1)
    """The variant is chosen when the contact's split bucket is below this (cumulative share)."""


class FoldedHoldout(_Spec):
    step_id: str = Field(min_length=1, max_length=64)
    percent: float = Field(gt=0, lt=100)


class FoldedSplit(_Spec):
    step_id: str = Field(min_length=1, max_length=64)
    variants: list[SplitVariant] = Field(min_length=1)


class FusedSendSpec(_Spec):
    """A send task with decisions folded in (``Compiler.fused_send``): a ``holdout`` and/or a
    ``random_split`` of one send per path (``split``), else the single ``send``."""

    holdout: FoldedHoldout | None = None
    split: FoldedSplit | None = None
    send: FoldedSend | None = None


def _send_form(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "fused" if isinstance(value, FusedSendSpec) else "plain"
    return (
        "fused" if isinstance(value, dict) and {"holdout", "split", "send"}.intersection(value) else "plain"
    )


SendStep = Annotated[
    Annotated[SendSpec, Tag("plain")] | Annotated[FusedSendSpec, Tag("fused")],
    Discriminator(_send_form),
]


class ChannelSchedule(_Spec):
    """When a send of ``channel`` may go (definitions compiled before sends deferred themselves)."""

    channel: Literal["email", "sms"]


class Case(_Spec):
    if_: Condition = Field(alias="if")


class ActSend(_Spec):
    action: Literal["send_email", "send_sms"]
    step_id: str = Field(min_length=1, max_length=64)
    step: SendSpec


class ActUpdate(_Spec):
    action: Literal["update_contact"]
    step_id: str = Field(min_length=1, max_length=64)
    step: UpdateContact


Act = Annotated[ActSend | ActUpdate, Field(discriminator="action")]
"""What a fused branch does on a path (``Compiler._act``): the path's first step."""


class BranchSpec(_Spec):
    """A ``branch`` (``Compiler.branch``): ``if`` (then/else) or ``cases``; ``act`` when folded."""

    if_: Condition | None = Field(default=None, alias="if")
    cases: list[Case] | None = None
    act: dict[str, Act | None] | None = None


class WaitForSpec(_Spec):
    """A ``wait_for`` (``Compiler.wait_for``); ``timeout_seconds``/``check_every_seconds``: the
    polling form of definitions compiled before the callback pattern."""

    event: str = Field(min_length=1)
    where: dict[str, Any] = Field(default_factory=dict)
    count_from: Literal["wait", "entry"] = "wait"
    timeout_seconds: int | None = Field(default=None, ge=1)
    check_every_seconds: int | None = Field(default=None, ge=1)


class SplitSpec(_Spec):
    """A ``random_split`` decision task (definitions compiled before splits became Choices)."""

    weights: list[int] = Field(min_length=1)


class DeadLetterSpec(_Spec):
    url: str = ""


# --- the requests -------------------------------------------------------------------------------


class JourneySpec(_Spec):
    exit: Exit = Field(default_factory=Exit)
    settings: Settings = Field(default_factory=Settings)


class Task(BaseModel):
    """What every journey task sends (see ``Compiler.task``); ``step`` is typed per action."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    journey_id: str = Field(min_length=1, max_length=64)
    contact_id: str = Field(min_length=1, max_length=64)
    execution_id: str = Field(min_length=1, max_length=2048)
    step_id: str | None = Field(default=None, max_length=64)
    entered_at: str | None = None
    round: int = Field(default=0, ge=0)
    journey: JourneySpec = Field(default_factory=JourneySpec)
    since: str | None = None
    """The start of a polling ``wait_for`` (definitions compiled before the callback pattern)."""
    token: str | None = Field(default=None, max_length=4096)
    """A ``wait_for`` callback task's token (``$$.Task.Token``)."""
    entry_event_id: str | None = Field(default=None, max_length=128)
    """The event that entered the contact (sends and ``wait_until`` an ``event_property`` read it)."""
    outcome: Literal["completed", "exited", "held_out"] | None = None
    leave: Literal["completed"] | None = None
    """The journey's last step: leave the journey after it (the task ends the execution)."""
    reason: str | None = None
    holdout_bucket: float | None = Field(default=None, ge=0, lt=1)
    """The contact's ``holdout`` bucket, for a send task with the holdout folded in."""
    split_bucket: float | None = Field(default=None, ge=0, lt=1)
    """The contact's ``random_split`` bucket, for a send task that picks the variant."""
    failure: dict[str, Any] | None = None
    """The error a dead-lettered step failed with (Step Functions' ``{Error, Cause}``)."""

    @property
    def round_step_id(self) -> str:
        """The step id messages and markers use: the same step in a later loop round is another."""
        assert self.step_id is not None
        return self.step_id if self.round == 0 else f"{self.step_id}@{self.round}"

    @property
    def execution_name(self) -> str:
        return self.execution_id.rsplit(":", 1)[-1]

    @property
    def lineage_id(self) -> str:
        """What ids are derived from: the execution, or the one it continues when a deploy moved
        it onto a new journey version (``leadflow.kernel.ids.lineage``): a step done before the move is
        already done after it."""
        return ids.lineage(self.execution_id)


class SendEmailTask(Task):
    action: Literal["send_email"]
    step: SendStep


class SendSmsTask(Task):
    action: Literal["send_sms"]
    step: SendStep


class ScheduleTask(Task):
    action: Literal["schedule"]
    step: WaitUntil | ChannelSchedule


class EvaluateTask(Task):
    action: Literal["evaluate"]
    step: BranchSpec


class SplitTask(Task):
    action: Literal["split"]
    step: SplitSpec


class HoldoutTask(Task):
    action: Literal["holdout"]
    step: Holdout


class WaitForTask(Task):
    action: Literal["wait_for"]
    step: WaitForSpec


class UpdateContactTask(Task):
    action: Literal["update_contact"]
    step: UpdateContact


class NotifySalesTask(Task):
    action: Literal["notify_sales"]
    step: NotifySales


class WebhookTask(Task):
    action: Literal["webhook"]
    step: Webhook


class DeadLetterTask(Task):
    action: Literal["dead_letter"]
    step: DeadLetterSpec = Field(default_factory=DeadLetterSpec)


class LeaveTask(Task):
    action: Literal["leave"]


SendTask = SendEmailTask | SendSmsTask
StepTask = Annotated[
    SendEmailTask
    | SendSmsTask
    | ScheduleTask
    | EvaluateTask
    | SplitTask
    | HoldoutTask
    | WaitForTask
    | UpdateContactTask
    | NotifySalesTask
    | WebhookTask
    | DeadLetterTask
    | LeaveTask,
    Discriminator("action"),
]
TASK: TypeAdapter[StepTask] = TypeAdapter(StepTask)
"""Parses a task payload into its request model (``TASK.validate_python(event)``)."""


_T = TypeVar("_T", bound="Task")


def derive(request: Task, model: type[_T], **update: Any) -> _T:
    """A request of another action for the same execution and contact (a folded step done by the
    task that folds it): the common fields of ``request`` with ``update`` (models already parsed are taken as they are)."""
    fields = {name: getattr(request, name) for name in Task.model_fields}
    return model.model_validate(fields | update)
