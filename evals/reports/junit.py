"""JUnit XML for CI systems: one testcase per case and trial; a failure carries the typed reasons and evidence.

With a baseline, a case that failed there too is reported as skipped ("known failure"), so the JUnit view agrees
with the gate: only new failures are failures.

A regression against the baseline is also reported as a failing testcase of its own suite, so a CI view that only
shows JUnit says which conversation broke. A trial that errored (a timeout, a 5xx) is an `<error>`, not a
`<failure>`: it says nothing about the agent. Whatever the model wrote, the file is valid XML 1.0: characters XML
cannot hold (control characters such as ESC) are written as `\\x1b`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from evals.compare import Comparison
from evals.reports.markdown import call_text
from evals.results import RunResult
from evals.scoring import explain

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """`text` with every character XML 1.0 cannot hold written out as an escape (`\\x1b`)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _sanitise(root: ET.Element) -> None:
    for element in root.iter():
        if element.text:
            element.text = xml_safe(element.text)
        if element.tail:
            element.tail = xml_safe(element.tail)
        for key, value in element.attrib.items():
            element.attrib[key] = xml_safe(value)


def render_junit(result: RunResult, *, comparison: Comparison | None = None) -> str:
    known = (
        {c.case_id for c in comparison.cases if c.status in ("still_failing", "flaky") and c.baseline_passed == 0}
        if comparison is not None
        else set()
    )
    root = ET.Element("testsuites", name="todo-agent evals")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"evals ({result.info.target.get('model')})",
        tests=str(len(result.trials)),
        failures=str(sum(not t.passed and not t.score.errored and t.case_id not in known for t in result.trials)),
        skipped=str(sum(not t.passed and not t.score.errored and t.case_id in known for t in result.trials)),
        errors=str(sum(t.score.errored for t in result.trials)),
        time=f"{result.info.wall_seconds or 0:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key in ("model", "prompt_file", "prompt_version"):
        ET.SubElement(props, "property", name=key, value=str(result.info.target.get(key)))
    multi = result.metrics.get("trials_per_case", 1) > 1
    for trial in result.trials:
        seconds = (trial.transcript.wall_ms or 0) / 1000
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"evals.{trial.tags[0] if trial.tags else 'case'}",
            name=f"{trial.case_id}[trial {trial.trial}]" if multi else trial.case_id,
            time=f"{seconds:.3f}",
        )
        if trial.score.errored:
            retried = f" (after {len(trial.transcript.retried)} retries)" if trial.transcript.retried else ""
            error = ET.SubElement(case, "error", message=f"no answer{retried}: neither a pass nor a failure",
                                  type="errored")  # fmt: skip
            error.text = explain(trial.score)
        elif not trial.passed and trial.case_id in known:
            # Failing in the baseline too: the gate does not fail on it, so neither should a JUnit view.
            skipped = ET.SubElement(case, "skipped", message="known failure: fails in the baseline too")
            skipped.text = explain(trial.score)
        elif not trial.passed:
            failure = ET.SubElement(
                case, "failure", message="; ".join(trial.score.failure_kinds), type=trial.score.failures[0].kind
            )
            failure.text = explain(trial.score)
        lines = []
        for turn in trial.transcript.turns:
            calls = "; ".join(call_text(c) for c in turn.tool_calls) or "no calls"
            lines.append(f"user: {turn.user}\ncalls: {calls}\nreply: {turn.error or turn.response}")
        ET.SubElement(case, "system-out").text = "\n\n".join(lines)
    if comparison is not None:
        gate_suite = ET.SubElement(
            root,
            "testsuite",
            name="regressions against the baseline",
            tests=str(len([c for c in comparison.cases if c.status != "not_run"])),
            failures=str(len(comparison.regressions)),
            errors=str(len(comparison.inconclusive)),
        )
        for item in comparison.cases:
            if item.status == "not_run":
                continue
            case = ET.SubElement(gate_suite, "testcase", classname="evals.regression", name=item.case_id)
            if item.status == "regression":
                failure = ET.SubElement(case, "failure", message="passed in every baseline trial, fails in every "
                                        "candidate trial", type="regression")  # fmt: skip
                failure.text = explain(item.candidate_evidence.score) if item.candidate_evidence else ""
            elif item.status == "inconclusive":
                ET.SubElement(case, "error", message="inconclusive: every trial errored", type="inconclusive")
            elif item.status == "flaky":
                ET.SubElement(case, "system-out").text = (
                    f"flaky: baseline {item.baseline_passed}/{item.baseline_trials}, "
                    f"candidate {item.candidate_passed}/{item.candidate_trials}"
                )
    _sanitise(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
