"""The composition root: the one package that puts the backend, the playground and the evals together.

`todo_agent.app` builds the ASGI app with every door (the backend's own, and the playground when it is installed and
on); `todo_agent.cli` is the `todo-agent` command. Nothing else imports more than one of the three.
"""
