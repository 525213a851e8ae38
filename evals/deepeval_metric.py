"""deepeval integration: each trial as an `LLMTestCase`, our scorer as a deepeval metric, and deepeval's own
`ToolCorrectnessMetric` in its strict settings for people who compare with it.

Why not rely on `ToolCorrectnessMetric`'s defaults: by default it only checks that every expected tool name appears
among the called ones, so an extra `delete_task` after the right `complete_task` scores a perfect 1.0 (see
tests/test_evals_deepeval.py). Its strict settings (exact match, input parameters compared) catch that, but also
fail a harmless exploratory `list_tasks` and any wording difference in a title; and it never sees the task list.
Our metric re-runs the deterministic scorer on the case and transcript carried in the test case's metadata.

Everything here runs offline: no judge model is ever called (`NoJudge` raises if one is), and telemetry is off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "1")
os.environ.setdefault("DEEPEVAL_DISABLE_DOTENV", "1")

from deepeval.metrics import BaseMetric, ToolCorrectnessMetric
from deepeval.models import DeepEvalBaseLLM
from deepeval.test_case import LLMTestCase, SingleTurnParams, ToolCall, ToolCallParams

from evals.dataset import Case, Dataset
from evals.matchers import MatchContext, resolve_example
from evals.results import RunResult, TrialResult
from evals.scoring import explain, score_trial
from evals.transcript import Transcript, task_view


class NoJudge(DeepEvalBaseLLM):
    """A placeholder evaluation model: deepeval insists on building one, and we never want one called."""

    def __init__(self) -> None:
        super().__init__(model="no-judge")

    def load_model(self, *args: Any, **kwargs: Any) -> NoJudge:
        return self

    def generate(self, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the todo-agent evals are deterministic: no judge model may be called")

    async def a_generate(self, *args: Any, **kwargs: Any) -> str:
        return self.generate()

    def get_model_name(self, *args: Any, **kwargs: Any) -> str:
        return "no-judge (offline)"


# ---------------------------------------------------------------- test cases


def tools_called(transcript: Transcript) -> list[ToolCall]:
    return [
        ToolCall(name=call.name, input_parameters=dict(call.arguments), output=call.result)
        for turn in transcript.turns
        for call in turn.tool_calls
    ]


def expected_tools(case: Case, transcript: Transcript) -> list[ToolCall]:
    """The expected calls with the argument values a matcher makes evident (deepeval compares values only)."""
    out: list[ToolCall] = []
    before = [task_view(t) for t in transcript.tasks_before]
    for index, turn in enumerate(case.turns):
        ctx = MatchContext(transcript.ids, transcript.missing_id, tuple(before))
        for call in turn.calls:
            if call.optional:
                continue
            params: dict[str, Any] = {}
            for name, spec in call.args.items():
                if getattr(spec, "kind", None) == "optional":
                    continue
                found, value = resolve_example(spec, ctx)
                if found:
                    params[name] = value
            out.append(ToolCall(name=call.tool, input_parameters=params))
        if index < len(transcript.turns) and transcript.turns[index].tasks_after is not None:
            before = [task_view(t) for t in transcript.turns[index].tasks_after or []]
    return out


def to_test_case(case: Case, trial: TrialResult | Transcript) -> LLMTestCase:
    transcript = trial.transcript if isinstance(trial, TrialResult) else trial
    replies = [t.response or t.error or "" for t in transcript.turns]
    return LLMTestCase(
        name=f"{case.id}#{transcript.trial}",
        input="\n".join(t.user for t in case.turns),
        actual_output=replies[-1] if replies else "",
        tools_called=tools_called(transcript),
        expected_tools=expected_tools(case, transcript),
        tags=list(case.tags),
        metadata={
            "case": case.model_dump(mode="json", exclude_unset=True),
            "transcript": transcript.model_dump(mode="json"),
        },
    )


# ---------------------------------------------------------------- metrics


class TodoAgentMetric(BaseMetric):
    """The deterministic todo-agent scorer as a deepeval metric: 1.0 when the trial passes, else 0.0."""

    _required_params = [SingleTurnParams.INPUT, SingleTurnParams.TOOLS_CALLED]  # type: ignore[assignment]  # noqa: RUF012

    def __init__(self, threshold: float = 1.0) -> None:
        self.threshold = threshold
        self.async_mode = False
        self.strict_mode = True
        self.include_reason = True
        self.evaluation_model = "deterministic (todo-agent evals.scoring)"
        self.verbose_logs = None

    def measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        metadata = test_case.metadata or {}
        if "case" not in metadata or "transcript" not in metadata:
            raise ValueError("the test case carries no todo-agent case/transcript metadata (use to_test_case)")
        case = Case.model_validate(metadata["case"])
        transcript = Transcript.model_validate(metadata["transcript"])
        score = score_trial(case, transcript)
        self.score = 1.0 if score.passed else 0.0
        self.reason = explain(score)
        self.success = self.score >= (self.threshold or 0.0)
        return self.score

    async def a_measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        return self.measure(test_case)

    def is_successful(self) -> bool:
        return bool(self.success)

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return "todo-agent scorer"


def strict_tool_correctness() -> ToolCorrectnessMetric:
    """deepeval's ToolCorrectnessMetric with nothing left to its lenient defaults: the called tools must equal the
    expected ones, in order, with equal input parameters; no LLM tool-selection judgement."""
    return ToolCorrectnessMetric(
        model=NoJudge(),
        threshold=1.0,
        evaluation_params=[ToolCallParams.INPUT_PARAMETERS],
        should_exact_match=True,
        should_consider_ordering=True,
        strict_mode=True,
        async_mode=False,
        include_reason=True,
    )


def default_tool_correctness() -> ToolCorrectnessMetric:
    """deepeval's defaults (names only, extra calls ignored): shown for comparison, never used to judge."""
    return ToolCorrectnessMetric(model=NoJudge(), async_mode=False)


class ReportOnly(BaseMetric):
    """Wraps a metric so its score is shown by `deepeval test run` without deciding the test's outcome."""

    def __init__(self, inner: BaseMetric) -> None:
        self.inner = inner
        self.threshold = 0.0
        self.async_mode = False
        self.strict_mode = False
        self.include_reason = True
        self.evaluation_model = getattr(inner, "evaluation_model", None)
        self._required_params = list(getattr(inner, "_required_params", []))  # type: ignore[assignment]

    def measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        self.score = self.inner.measure(test_case, _show_indicator=False)
        self.reason = f"(reported, not gating) {self.inner.reason}"
        self.success = True
        return float(self.score or 0.0)

    async def a_measure(self, test_case: LLMTestCase, *args: Any, **kwargs: Any) -> float:
        return self.measure(test_case)

    def is_successful(self) -> bool:
        return True

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return f"{self.inner.__name__} (strict, reported)"


def strict_tool_correctness_summary(result: RunResult, dataset: Dataset | Sequence[Case]) -> dict[str, Any]:
    """Score every trial with the strict ToolCorrectnessMetric; list where it disagrees with our verdict."""
    cases = {c.id: c for c in (dataset.cases if isinstance(dataset, Dataset) else dataset)}
    scores: dict[str, float] = {}
    disagreements = []
    for trial in result.trials:
        case = cases.get(trial.case_id)
        if case is None:
            continue
        metric = strict_tool_correctness()
        value = float(metric.measure(to_test_case(case, trial), _show_indicator=False) or 0.0)
        key = f"{trial.case_id}#{trial.trial}"
        scores[key] = value
        if (value >= 1.0) != trial.passed:
            disagreements.append({"trial": key, "deepeval_strict": value, "todo_agent": trial.passed})
    mean = round(sum(scores.values()) / len(scores), 4) if scores else None
    return {
        "metric": "ToolCorrectnessMetric(should_exact_match=True, should_consider_ordering=True, "
        "evaluation_params=[INPUT_PARAMETERS], strict_mode=True, threshold=1.0)",
        "tool_correctness_strict_mean": mean,
        "scores": scores,
        "disagreements": disagreements,
    }
