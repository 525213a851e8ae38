"""Reports of a run: Markdown (terminal, PR comments), self-contained HTML (charts, transcripts), JUnit XML (CI)."""

from evals.reports.html import render_html
from evals.reports.junit import render_junit
from evals.reports.markdown import render_markdown, render_summary

__all__ = ["render_html", "render_junit", "render_markdown", "render_summary"]
