"""todo-agent: a chat backend for a tool-using todo assistant."""

__version__ = "0.1.0"
