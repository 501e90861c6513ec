"""A fake Notion API (version 2025-09-03) over real HTTP, serving the sample company's workspace."""

from connectors.sandbox.notion.server import DEFAULT_TOKEN, NotionSandbox, running_sandbox
from connectors.sandbox.notion.workspace import TEAMSPACES, build_workspace
from connectors.sandbox.server import ThreadedServer

__all__ = ["DEFAULT_TOKEN", "NotionSandbox", "TEAMSPACES", "ThreadedServer", "build_workspace", "running_sandbox"]
