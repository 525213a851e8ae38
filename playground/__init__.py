"""The Gradio playground: chat with the agent, watch its tool calls, edit the prompt, run the evals.

Kept import-light on purpose: the composition root (`todo_agent.app`) imports it to mount it, so the Gradio app and
the eval machinery are only imported when `mount` or `launch` runs.
"""

from playground.door import launch, mount

__all__ = ["launch", "mount"]
