"""The worker SDK without a broker: registration, and the Result a handler turns into."""

from __future__ import annotations

import asyncio
import re
import threading
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kubesaga.cli.worker_cmd import worker as worker_command
from kubesaga.worker import (
    CommandKind,
    ErrorInfo,
    PermanentError,
    Result,
    ResultStatus,
    RetryableError,
    Settings,
    StepContext,
    Worker,
)
from kubesaga.worker.loader import WorkerLoadError, load_worker
from kubesaga.worker.testing import make_context, run_handler


def make_worker() -> Worker:
    worker = Worker("orders")

    @worker.step("orders.create")
    async def create(ctx: StepContext) -> dict[str, Any]:
        return {"order_id": f"o-{ctx.input['sku']}", "customer": ctx.context["customer"]}

    @worker.step("orders.price")
    def price(ctx: StepContext) -> dict[str, Any]:
        total = ctx.dependency_outputs["create"]["qty"] * 2.5
        return {"total": total, "thread": threading.current_thread().name}

    @worker.compensation("orders.delete")
    async def delete(ctx: StepContext) -> None:
        assert ctx.step_output == {"order_id": "o-1"}

    @worker.step("orders.busy")
    async def busy(ctx: StepContext) -> dict[str, Any]:
        raise RetryableError("inventory locked", type="InventoryLocked")

    @worker.step("orders.throttled")
    async def throttled(ctx: StepContext) -> dict[str, Any]:
        raise RetryableError("rate limited", type="TooManyRequests", retry_after=30)

    @worker.step("orders.declined")
    async def declined(ctx: StepContext) -> dict[str, Any]:
        raise PermanentError("card declined", type="PaymentDeclined")

    @worker.step("orders.bug")
    async def bug(ctx: StepContext) -> dict[str, Any]:
        return {"x": ctx.input["missing"]}

    @worker.step("orders.listy")
    async def listy(ctx: StepContext) -> list[int]:
        return [1, 2]

    @worker.step("orders.opaque")
    async def opaque(ctx: StepContext) -> dict[str, Any]:
        return {"when": object()}

    @worker.step("orders.nothing")
    def nothing(ctx: StepContext) -> None:
        return None

    @worker.step("orders.slow")
    async def slow(ctx: StepContext) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    return worker


WORKER = make_worker()


async def test_async_step_output_becomes_the_succeeded_result() -> None:
    result = await run_handler(
        WORKER, "orders.create", input={"sku": "A-1"}, context={"customer": "c-9"}, attempt=2
    )
    assert result.status is ResultStatus.SUCCEEDED
    assert result.output == {"order_id": "o-A-1", "customer": "c-9"}
    assert (result.attempt, result.kind, result.worker, result.error) == (
        2,
        CommandKind.EXECUTE,
        "orders",
        None,
    )


async def test_sync_step_runs_in_a_thread_and_sees_earlier_outputs() -> None:
    result = await run_handler(WORKER, "orders.price", dependency_outputs={"create": {"qty": 4}})
    assert result.output is not None
    assert result.output["total"] == 10.0
    assert result.output["thread"] != threading.main_thread().name


async def test_step_returning_none_has_an_empty_output() -> None:
    result = await run_handler(WORKER, "orders.nothing")
    assert (result.status, result.output) == (ResultStatus.SUCCEEDED, {})


async def test_compensation_sees_the_step_output_and_runs_as_compensate() -> None:
    result = await run_handler(WORKER, "orders.delete", step_output={"order_id": "o-1"})
    assert (result.status, result.kind, result.output) == (
        ResultStatus.SUCCEEDED,
        CommandKind.COMPENSATE,
        None,
    )


async def test_retryable_error_gives_a_retryable_failure() -> None:
    result = await run_handler(WORKER, "orders.busy")
    assert result.status is ResultStatus.FAILED
    assert result.error == ErrorInfo(
        message="inventory locked", type="InventoryLocked", retryable=True
    )


async def test_a_retry_after_travels_in_the_result() -> None:
    result = await run_handler(WORKER, "orders.throttled")
    assert result.error is not None and result.error.retry_after_seconds == 30
    assert '"retryAfterSeconds":30' in result.model_dump_json(by_alias=True)


async def test_permanent_error_gives_a_permanent_failure() -> None:
    result = await run_handler(WORKER, "orders.declined")
    assert result.error == ErrorInfo(message="card declined", type="PaymentDeclined")


async def test_any_other_exception_is_a_permanent_failure_named_after_its_class() -> None:
    result = await run_handler(WORKER, "orders.bug", input={})
    assert result.status is ResultStatus.FAILED
    assert result.error == ErrorInfo(message="'missing'", type="KeyError", retryable=False)


async def test_non_dict_output_is_a_permanent_failure() -> None:
    result = await run_handler(WORKER, "orders.listy")
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("InvalidOutput", False)
    assert "must return a dict" in result.error.message and "list" in result.error.message


async def test_output_that_is_not_json_is_a_permanent_failure() -> None:
    result = await run_handler(WORKER, "orders.opaque")
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("InvalidOutput", False)
    assert "not JSON-serialisable" in result.error.message


async def test_handler_past_its_deadline_is_cancelled_with_a_retryable_timeout() -> None:
    deadline = datetime.now(UTC) + timedelta(milliseconds=50)
    result = await run_handler(WORKER, "orders.slow", deadline=deadline)
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("Timeout", True)


async def test_command_whose_deadline_already_passed_times_out_without_running() -> None:
    ran: list[StepContext] = []
    worker = Worker("w")
    worker.step("a")(ran.append)
    result = await run_handler(worker, "a", deadline=datetime.now(UTC) - timedelta(seconds=1))
    assert result.error is not None and result.error.type == "Timeout"
    assert ran == []


async def test_result_copies_the_commands_identity() -> None:
    result = await run_handler(
        WORKER,
        "orders.create",
        input={"sku": "B"},
        context={"customer": "c"},
        attempt=2,
        step="create",
        saga_name="s9",
        saga_namespace="shop",
    )
    assert isinstance(result, Result)
    assert (result.saga.namespace, result.saga.name, result.step, result.attempt) == (
        "shop",
        "s9",
        "create",
        2,
    )
    assert result.dispatch_id.startswith(f"{result.saga.uid}/create/execute/2/")


async def test_run_handler_of_an_unregistered_action_says_what_is_registered() -> None:
    with pytest.raises(LookupError, match=r"no handler for action 'orders\.nope'.*orders\.create"):
        await run_handler(WORKER, "orders.nope")


def test_make_context_builds_what_a_handler_sees() -> None:
    ctx = make_context("orders.create", input={"sku": "A"}, attempt=3, saga_name="s1")
    assert (ctx.input, ctx.attempt, ctx.saga_name, ctx.action, ctx.kind) == (
        {"sku": "A"},
        3,
        "s1",
        "orders.create",
        CommandKind.EXECUTE,
    )


def test_registering_an_action_twice_is_an_error() -> None:
    worker = Worker("w")
    worker.step("orders.create")(lambda ctx: None)
    with pytest.raises(ValueError, match=r"'orders\.create' is already registered on worker 'w'"):
        worker.compensation("orders.create")(lambda ctx: None)


def test_invalid_action_name_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="invalid action name"):
        Worker("w").step("orders create")


def test_registration_is_per_worker_and_listed_in_order() -> None:
    first, second = Worker("a"), Worker("b")
    first.step("x.one")(lambda ctx: None)
    first.compensation("x.two")(lambda ctx: None)
    assert first.actions == ["x.one", "x.two"]
    assert second.actions == []


def test_decorators_return_the_handler_unchanged() -> None:
    async def handler(ctx: StepContext) -> None:
        return None

    assert Worker("w").step("x")(handler) is handler


# ------------------------------------------------------------------ loading a worker by name

NOT_A_WORKER = object()


def test_load_worker_finds_the_worker_object() -> None:
    assert load_worker("tests.unit.test_worker_kit:WORKER") is WORKER


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.unit.test_worker_kit", "expected 'package.module:attribute'"),
        ("tests.unit.no_such_module:worker", "cannot import module 'tests.unit.no_such_module'"),
        ("tests.unit.test_worker_kit:nope", "has no attribute 'nope'"),
        ("tests.unit.test_worker_kit:NOT_A_WORKER", "is a object, not a kubesaga Worker"),
    ],
    ids=["no-colon", "no-module", "no-attribute", "not-a-worker"],
)
def test_load_worker_explains_a_bad_target(target: str, message: str) -> None:
    with pytest.raises(WorkerLoadError, match=re.escape(message)):
        load_worker(target)


def test_worker_command_exits_2_with_the_reason_for_a_bad_target() -> None:
    app = typer.Typer()
    app.command()(worker_command)
    outcome = CliRunner().invoke(app, ["tests.unit.test_worker_kit:NOT_A_WORKER"])
    assert outcome.exit_code == 2
    assert "not a kubesaga Worker" in outcome.output


# -------------------------------------------------- the old StepContext names, for one release


def test_old_context_names_still_answer_but_warn() -> None:
    ctx = make_context(dependency_outputs={"a": {"x": 1}}, step_output={"y": 2})
    with pytest.warns(DeprecationWarning, match=r"StepContext\.outputs .*dependency_outputs"):
        assert ctx.outputs == {"a": {"x": 1}}
    with pytest.warns(DeprecationWarning, match=r"StepContext\.output .*step_output"):
        assert ctx.output == {"y": 2}


async def test_old_keywords_of_the_testing_kit_still_work_but_warn() -> None:
    with pytest.warns(DeprecationWarning, match="outputs= is deprecated"):
        result = await run_handler(WORKER, "orders.price", outputs={"create": {"qty": 4}})
    assert result.output is not None and result.output["total"] == 10.0
    with pytest.warns(DeprecationWarning, match="output= is deprecated"):
        ctx = make_context(output={"y": 2})
    assert ctx.step_output == {"y": 2}
    with pytest.raises(TypeError, match="give step_output only"):
        make_context(output={"y": 2}, step_output={"y": 3})


def test_the_new_names_do_not_warn() -> None:
    ctx = make_context(dependency_outputs={"a": {}}, step_output=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (ctx.dependency_outputs, ctx.step_output) == ({"a": {}}, None)


# ------------------------------------------------------- settings of `kubesaga worker` and run()


def captured_run(monkeypatch: pytest.MonkeyPatch) -> list[Settings | None]:
    """Replace ``Worker.run`` by a recorder of the settings it is given."""
    seen: list[Settings | None] = []

    async def run(
        self: Worker, settings: Settings | None = None, *, stop: asyncio.Event | None = None
    ) -> None:
        seen.append(settings)

    monkeypatch.setattr(Worker, "run", run)
    return seen


def test_worker_command_reads_the_settings_and_its_flags_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = captured_run(monkeypatch)
    monkeypatch.setenv("KUBESAGA_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("KUBESAGA_WORKER_GRACE_SECONDS", "7")
    app = typer.Typer()
    app.command()(worker_command)
    target = "tests.unit.test_worker_kit:WORKER"
    assert CliRunner().invoke(app, [target]).exit_code == 0
    assert CliRunner().invoke(app, ["--concurrency", "5", "--grace", "1.5", target]).exit_code == 0
    assert [(s.worker_concurrency, s.worker_grace_seconds) for s in seen if s] == [
        (3, 7.0),
        (5, 1.5),
    ]


def test_worker_command_refuses_a_bad_setting_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = captured_run(monkeypatch)
    app = typer.Typer()
    app.command()(worker_command)
    outcome = CliRunner().invoke(app, ["--concurrency", "0", "tests.unit.test_worker_kit:WORKER"])
    assert outcome.exit_code == 2 and seen == []
    assert "KUBESAGA_WORKER_CONCURRENCY: Input should be greater than or equal to 1" in (
        outcome.output
    )


async def test_run_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Worker.run()`` needs no import beyond the Worker: the environment is the default."""
    served: list[tuple[str, str, int, float]] = []

    async def serve(
        self: Worker, broker: Any, *, concurrency: int, grace: float, **_: object
    ) -> None:
        served.append((broker.url, broker.results_queue, concurrency, grace))

    monkeypatch.setattr(Worker, "_serve", serve)
    monkeypatch.setenv("KUBESAGA_AMQP_URL", "amqp://u:p@mq:5672/v")
    monkeypatch.setenv("KUBESAGA_RESULTS_QUEUE", "r.x")
    monkeypatch.setenv("KUBESAGA_WORKER_CONCURRENCY", "9")
    monkeypatch.setenv("KUBESAGA_WORKER_GRACE_SECONDS", "2")
    await WORKER.run()
    assert served == [("amqp://u:p@mq:5672/v", "r.x", 9, 2.0)]
