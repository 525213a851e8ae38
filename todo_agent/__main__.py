"""`python -m todo_agent ...`: the same command as `todo-agent`."""

from todo_agent.cli import app

app(prog_name="todo-agent")
